//! YAML to JSON with a location for every path, so validation can point at
//! the line and column of each problem (serde_yaml-style loaders lose them).
//!
//! Playbooks are trusted more than findings, but a playbook directory is
//! still input: a 1.6 KB file of nested aliases ("billion laughs") expands to
//! billions of nodes, and a few hundred thousand `[` or `- ` nest deeper than
//! any stack. So the loader caps the file size, the nesting depth and what
//! aliases may copy (nodes and text, counted before copying), and fails fast
//! with a located error instead of exhausting memory.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest playbook file accepted; shipped playbooks are a few KiB.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting of sequences and mappings, aliases expanded; a playbook needs about 6.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold once every alias is expanded.
pub const MAX_NODES: usize = 10_000;
/// Most scalar text (bytes) a document may hold once every alias is expanded.
pub const MAX_TEXT_BYTES: usize = 4 * MAX_BYTES;
/// Most bytes of located paths (`steps[2].with.tags`) a document may produce.
pub const MAX_PATH_BYTES: usize = 16 * MAX_BYTES;

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

    const START: Location = Location { line: 1, column: 1 };
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

/// A YAML syntax error, or a document over one of the limits, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
    /// The document is well-formed YAML but over one of the limits above.
    pub over_limit: bool,
}

/// Parses one YAML document (the first, if there are several).
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    if text.len() > MAX_BYTES {
        return Err(SyntaxError {
            location: Location::START,
            message: format!(
                "the file is {} bytes, more than the {MAX_BYTES}-byte limit for a playbook",
                text.len()
            ),
            over_limit: true,
        });
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Events are pulled one at a time rather than through `Parser::load`, which
    // recurses once per nesting level: a deep document would overflow the stack
    // before any limit here could stop it.
    loop {
        let (event, mark) = parser.next_token().map_err(|e| SyntaxError {
            location: Location::from_marker(*e.marker()),
            message: e.info().to_string(),
            over_limit: false,
        })?;
        let done = matches!(event, Event::StreamEnd | Event::DocumentEnd);
        builder.on_event(event, mark)?;
        if done {
            break;
        }
    }
    let Some(root) = builder.root else {
        return Ok(Document::default());
    };
    let mut document = Document::default();
    let mut path_bytes = 0;
    document.value = to_json(&root, "", &mut document.locations, &mut path_bytes)?;
    Ok(document)
}

#[derive(Debug)]
enum Node {
    Scalar(String, TScalarStyle, Marker),
    Sequence(Vec<Node>, Marker),
    Mapping(Vec<(Node, Node)>, Marker),
    /// An anchored node, held once however many aliases refer to it.
    Shared(Rc<Node>),
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
            Node::Shared(node) => node.marker(),
        }
    }

    /// The text of a scalar (or of an alias to one).
    fn scalar_text(&self) -> Option<&str> {
        match self {
            Node::Scalar(text, _, _) => Some(text),
            Node::Shared(node) => node.scalar_text(),
            Node::Sequence(..) | Node::Mapping(..) => None,
        }
    }
}

/// What a node costs once expanded: nodes, scalar bytes, and nesting levels.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text: usize,
    height: usize,
}

impl Size {
    fn add(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.text = self.text.saturating_add(child.text);
        self.height = self.height.max(child.height.saturating_add(1));
    }

    /// A collection's size: its children plus itself.
    fn with_self(self) -> Size {
        Size {
            nodes: self.nodes.saturating_add(1),
            ..self
        }
    }
}

enum Frame {
    Sequence(Vec<Node>, Marker, usize, Size),
    Mapping(Vec<(Node, Node)>, Option<Node>, Marker, usize, Size),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Rc<Node>, Size)>,
    root: Option<Node>,
    /// Everything pushed so far, aliases expanded.
    total: Size,
}

impl Builder {
    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), SyntaxError> {
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let size = Size {
                    nodes: 1,
                    text: text.len(),
                    height: 0,
                };
                self.push_node(Node::Scalar(text, style, mark), size, anchor, mark)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack
                    .push(Frame::Sequence(Vec::new(), mark, anchor, Size::default()));
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Mapping(
                    Vec::new(),
                    None,
                    mark,
                    anchor,
                    Size::default(),
                ));
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Sequence(items, start, anchor, size)) => {
                    self.push_node(Node::Sequence(items, start), size.with_self(), anchor, mark)
                }
                _ => Err(unbalanced(mark)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Mapping(entries, _, start, anchor, size)) => self.push_node(
                    Node::Mapping(entries, start),
                    size.with_self(),
                    anchor,
                    mark,
                ),
                _ => Err(unbalanced(mark)),
            },
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    let (node, size) = (Node::Shared(Rc::clone(node)), *size);
                    self.push_node(node, size, 0, mark)
                }
                None => Err(SyntaxError {
                    location: Location::from_marker(mark),
                    message: "alias to an unknown anchor".to_string(),
                    over_limit: false,
                }),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => Ok(()),
        }
    }

    /// A new sequence or mapping one level below the current one.
    fn open(&self, mark: Marker) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(mark));
        }
        Ok(())
    }

    /// Adds a finished node to its parent, counting what it expands to before
    /// anything is kept, so an alias bomb stops at the first copy over the limit.
    fn push_node(
        &mut self,
        node: Node,
        size: Size,
        anchor: usize,
        mark: Marker,
    ) -> Result<(), SyntaxError> {
        if self.stack.len().saturating_add(size.height) > MAX_DEPTH {
            return Err(too_deep(mark));
        }
        // A collection's own children were counted as they arrived; only an
        // alias brings in nodes not counted yet.
        let fresh = match &node {
            Node::Shared(_) | Node::Scalar(..) => size,
            Node::Sequence(..) | Node::Mapping(..) => Size {
                nodes: 1,
                text: 0,
                height: 0,
            },
        };
        self.total.nodes = self.total.nodes.saturating_add(fresh.nodes);
        self.total.text = self.total.text.saturating_add(fresh.text);
        if self.total.nodes > MAX_NODES || self.total.text > MAX_TEXT_BYTES {
            return Err(SyntaxError {
                location: Location::from_marker(mark),
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes or {MAX_TEXT_BYTES} bytes of text \
                     (each alias copies what its anchor holds): a playbook needs a few hundred nodes"
                ),
                over_limit: true,
            });
        }
        let node = if anchor > 0 {
            let shared = Rc::new(node);
            self.anchors.insert(anchor, (Rc::clone(&shared), size));
            Node::Shared(shared)
        } else {
            node
        };
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Sequence(items, _, _, total)) => {
                total.add(size);
                items.push(node);
            }
            Some(Frame::Mapping(entries, pending_key, _, _, total)) => {
                total.add(size);
                match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                }
            }
        }
        Ok(())
    }
}

fn too_deep(mark: Marker) -> SyntaxError {
    SyntaxError {
        location: Location::from_marker(mark),
        message: format!(
            "nesting deeper than {MAX_DEPTH} levels (aliases expanded): a playbook needs about 6"
        ),
        over_limit: true,
    }
}

fn unbalanced(mark: Marker) -> SyntaxError {
    SyntaxError {
        location: Location::from_marker(mark),
        message: "unbalanced end of a sequence or mapping".to_string(),
        over_limit: false,
    }
}

fn to_json(
    node: &Node,
    path: &str,
    locations: &mut BTreeMap<String, Location>,
    path_bytes: &mut usize,
) -> Result<Value, SyntaxError> {
    *path_bytes = path_bytes.saturating_add(path.len());
    if *path_bytes > MAX_PATH_BYTES {
        return Err(SyntaxError {
            location: Location::from_marker(node.marker()),
            message: format!(
                "the document's keys and nesting make more than {MAX_PATH_BYTES} bytes of paths: \
                 shorten its keys or flatten it"
            ),
            over_limit: true,
        });
    }
    locations
        .entry(path.to_string())
        .or_insert_with(|| Location::from_marker(node.marker()));
    Ok(match node {
        Node::Shared(inner) => return to_json(inner, path, locations, path_bytes),
        Node::Scalar(text, style, _) => scalar(text, *style),
        Node::Sequence(items, _) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), locations, path_bytes))
                .collect::<Result<_, _>>()?,
        ),
        Node::Mapping(entries, _) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key_text = match key.scalar_text() {
                    Some(text) => text.to_string(),
                    None => to_json(key, path, &mut BTreeMap::new(), path_bytes)?.to_string(),
                };
                let child = if path.is_empty() {
                    key_text.clone()
                } else {
                    format!("{path}.{key_text}")
                };
                // Point at the key: that is where a reader looks for an unknown or bad field.
                locations.insert(child.clone(), Location::from_marker(key.marker()));
                let value = to_json(value, &child, locations, path_bytes)?;
                map.insert(key_text, value);
            }
            Value::Object(map)
        }
    })
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
