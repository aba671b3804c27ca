//! YAML to JSON with a location for every path, so validation can point at
//! the line and column of each problem (serde_yaml-style loaders lose them).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn from_marker(mark: Marker) -> Self {
        Self {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// A parsed document: its JSON value and where each path starts.
/// Paths look like `steps[2].with.isolation-group-name`; `""` is the root.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    pub locations: BTreeMap<String, Location>,
}

impl Document {
    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut path = path.to_string();
        loop {
            if let Some(loc) = self.locations.get(&path) {
                return Some(*loc);
            }
            if path.is_empty() {
                return None;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path.truncate(i),
                None => path.clear(),
            }
        }
    }
}

/// A YAML syntax error with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
}

/// Parses one YAML document (the first, if there are several).
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        location: Location::from_marker(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            location: builder.error_at.unwrap_or(Location { line: 1, column: 1 }),
            message,
        });
    }
    let Some(root) = builder.root else {
        return Ok(Document::default());
    };
    let mut document = Document::default();
    document.value = to_json(&root, "", &mut document.locations);
    Ok(document)
}

#[derive(Debug, Clone)]
enum Node {
    Scalar(String, TScalarStyle, Marker),
    Sequence(Vec<Node>, Marker),
    Mapping(Vec<(Node, Node)>, Marker),
}

impl Node {
    /// Where the node starts. The parser marks a block mapping where it recognised
    /// it, at its first key's `:`; a reader looks for it at the first key.
    fn marker(&self) -> Marker {
        match self {
            Node::Mapping(entries, m) => match entries.first() {
                Some((key, _)) if key.marker().index() < m.index() => key.marker(),
                _ => *m,
            },
            Node::Scalar(_, _, m) | Node::Sequence(_, m) => *m,
        }
    }
}

enum Frame {
    Sequence(Vec<Node>, Marker, usize),
    Mapping(Vec<(Node, Node)>, Option<Node>, Marker, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<String>,
    error_at: Option<Location>,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Sequence(items, _, _)) => items.push(node),
            Some(Frame::Mapping(entries, pending_key, _, _)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, _) => {
                self.push_node(Node::Scalar(text, style, mark), anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Sequence(Vec::new(), mark, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Frame::Mapping(Vec::new(), None, mark, anchor))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence(items, start, anchor)) = self.stack.pop() {
                    self.push_node(Node::Sequence(items, start), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping(entries, _, start, anchor)) = self.stack.pop() {
                    self.push_node(Node::Mapping(entries, start), anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_node(node, 0),
                None => {
                    self.error
                        .get_or_insert_with(|| "alias to an unknown anchor".to_string());
                    self.error_at.get_or_insert(Location::from_marker(mark));
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn to_json(node: &Node, path: &str, locations: &mut BTreeMap<String, Location>) -> Value {
    locations
        .entry(path.to_string())
        .or_insert_with(|| Location::from_marker(node.marker()));
    match node {
        Node::Scalar(text, style, _) => scalar(text, *style),
        Node::Sequence(items, _) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), locations))
                .collect(),
        ),
        Node::Mapping(entries, _) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key_text = match key {
                    Node::Scalar(text, _, _) => text.clone(),
                    other => to_json(other, path, &mut BTreeMap::new()).to_string(),
                };
                let child = if path.is_empty() {
                    key_text.clone()
                } else {
                    format!("{path}.{key_text}")
                };
                // Point at the key: that is where a reader looks for an unknown or bad field.
                locations.insert(child.clone(), Location::from_marker(key.marker()));
                let value = to_json(value, &child, locations);
                map.insert(key_text, value);
            }
            Value::Object(map)
        }
    }
}

/// YAML 1.2 core schema resolution for plain scalars; quoted scalars stay strings.
fn scalar(text: &str, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if text.chars().any(|c| c.is_ascii_digit())
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_locations() {
        let doc = parse("name: x\nsteps:\n  - id: a\n    with:\n      n: 3\n  - id: 'b'\n    f: 1.5\n    q: \"7\"\n").unwrap();
        assert_eq!(doc.value["steps"][0]["with"]["n"], 3);
        assert_eq!(doc.value["steps"][1]["f"], 1.5);
        assert_eq!(doc.value["steps"][1]["q"], "7");
        assert_eq!(
            doc.locate("steps[1].id"),
            Some(Location { line: 6, column: 5 })
        );
        assert_eq!(
            doc.locate("steps[0].with.n"),
            Some(Location { line: 5, column: 7 })
        );
        assert_eq!(
            doc.locate("steps[0].with.missing"),
            Some(Location { line: 4, column: 5 })
        );
    }

    #[test]
    fn syntax_error_has_location() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location.line >= 1, "{err:?}");
    }
}
