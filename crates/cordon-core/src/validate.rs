//! Playbook loading and validation. Every problem in every file is reported at
//! once, each with file, line, column, path and a hint, so a responder fixes a
//! directory of playbooks in one pass rather than one error at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::action::{Action, ActionKind, TargetKind};
use crate::finding::{Severity, SeverityBand, Source};
use crate::plan::PLACEHOLDERS;
use crate::playbook::{MatchRule, Playbook, Step, StepDocument};
use crate::text::{needs_escape, preview};
use crate::yaml::{self, Document, Location};

/// Resource types a playbook may match on for every source: GuardDuty's and
/// cordon's own.
pub const KNOWN_RESOURCE_TYPES: &[&str] = &[
    "Instance",
    "AccessKey",
    "S3Bucket",
    "S3Object",
    "EKSCluster",
    "ECSCluster",
    "Container",
    "RDSDBInstance",
    "RDSLimitlessDB",
    "Lambda",
    "EBSVolume",
    "SecurityGroup",
    "Snapshot",
    "Account",
];

/// Config's and Security Hub's resource-type names a playbook may match on
/// (findings of that source only).
pub const SOURCE_RESOURCE_TYPES: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::S3::Bucket",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::Snapshot",
    "AWS::EC2::Volume",
    "AWS::IAM::User",
    "AWS::IAM::Role",
    "AWS::RDS::DBInstance",
    "AWS::Lambda::Function",
    "AWS::::Account",
    "AwsEc2Instance",
    "AwsIamAccessKey",
    "AwsS3Bucket",
    "AwsEc2SecurityGroup",
    "AwsEc2Volume",
    "AwsIamUser",
    "AwsIamRole",
    "AwsRdsDbInstance",
    "AwsLambdaFunction",
    "AwsAccount",
    "Other",
];

/// The resource-type names under which a step's target can be found, in
/// cordon's, Config's and Security Hub's words.
fn target_resource_names(target: TargetKind) -> &'static [&'static str] {
    match target {
        TargetKind::Case => &[],
        TargetKind::Instance => &["Instance", "AWS::EC2::Instance", "AwsEc2Instance"],
        TargetKind::AccessKey | TargetKind::User => &["AccessKey", "AwsIamAccessKey"],
        TargetKind::Role => &[
            "AccessKey",
            "AwsIamAccessKey",
            "Instance",
            "AWS::EC2::Instance",
            "AwsEc2Instance",
        ],
        TargetKind::Bucket => &["S3Bucket", "AWS::S3::Bucket", "AwsS3Bucket"],
        TargetKind::SecurityGroup => &[
            "SecurityGroup",
            "AWS::EC2::SecurityGroup",
            "AwsEc2SecurityGroup",
        ],
        TargetKind::Snapshot => &["Snapshot", "AWS::EC2::Snapshot"],
        TargetKind::Account => &["Account", "AWS::::Account"],
    }
}

/// The sources a rule can match at all: its `sources` (else every one),
/// narrowed by the keys only some sources have (`config-rules`: Config;
/// `asff-types`: Security Hub; `products`, `severity-labels`: not Config;
/// a Config or Security Hub resource-type name: that source).
pub fn rule_sources(rule: &MatchRule) -> Vec<Source> {
    let all = [Source::GuardDuty, Source::SecurityHub, Source::Config];
    let only_native = |prefix: fn(&str) -> bool| {
        !rule.resource_types.is_empty() && rule.resource_types.iter().all(|r| prefix(r))
    };
    all.into_iter()
        .filter(|s| rule.sources.is_empty() || rule.sources.contains(s))
        .filter(|s| rule.config_rules.is_empty() || *s == Source::Config)
        .filter(|s| rule.asff_types.is_empty() || *s == Source::SecurityHub)
        .filter(|s| {
            (rule.products.is_empty() && rule.severity_labels.is_empty()) || *s != Source::Config
        })
        .filter(|s| !only_native(|r| r.starts_with("AWS::")) || *s == Source::Config)
        .filter(|s| !only_native(|r| r.starts_with("Aws")) || *s == Source::SecurityHub)
        .collect()
}

/// Access-key user types a playbook may match on (`userType` in GuardDuty's
/// `accessKeyDetails`; CloudTrail's identity types).
pub const KNOWN_USER_TYPES: &[&str] = &[
    "IAMUser",
    "AssumedRole",
    "Root",
    "FederatedUser",
    "AWSAccount",
    "AWSService",
    "IdentityCenterUser",
    "Role",
    "Directory",
    "Unknown",
];

/// One problem in one playbook file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub location: Option<(usize, usize)>,
    /// Path inside the document, e.g. `steps[2].with`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl Problem {
    /// A problem at `path` of a parsed document, located by its line and
    /// column: for the checks other YAML formats (Game Day scenarios) make
    /// after [`typed_yaml`] built their value.
    pub fn at(
        file: &str,
        doc: &Document,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Problem {
            file: file.to_string(),
            location: doc.locate(path).map(|l| (l.line, l.column)),
            path: path.to_string(),
            message: message.into(),
            hint,
        }
    }
}

/// Parses YAML, a syntax error (or a file over a limit) as one located problem.
fn parse_located(text: &str, file: &str) -> Result<Document, Vec<Problem>> {
    yaml::parse(text).map_err(|e| {
        vec![Problem {
            file: file.to_string(),
            location: Some((e.location.line, e.location.column)),
            path: String::new(),
            message: if e.over_limit {
                e.message
            } else {
                format!("not valid YAML: {}", e.message)
            },
            hint: None,
        }]
    })
}

/// Parses `text` (YAML) and deserializes it into `T`, reporting every problem
/// at once, each with `file:line:column`, a path and a hint, exactly as
/// playbooks are: the one validator for every YAML format cordon reads. The
/// document is returned so the caller can locate the problems of its own checks.
pub fn typed_yaml<T: DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<(T, Document), Vec<Problem>> {
    let doc = parse_located(text, file)?;
    let mut cx = FileContext {
        file,
        doc: &doc,
        problems: Vec::new(),
    };
    let (value, _) = cx.typed::<T>(&doc.value, "", &[]);
    match value {
        Some(value) if cx.problems.is_empty() => Ok((value, doc)),
        _ => {
            let mut problems = cx.problems;
            problems.sort();
            problems.dedup();
            Err(problems)
        }
    }
}

/// A playbook and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPlaybook {
    pub file: PathBuf,
    pub playbook: Playbook,
    /// SHA-256 (hex) of the file's bytes as read.
    pub sha256: String,
    match_location: Option<Location>,
    name_location: Option<Location>,
}

/// One hash for a set of playbooks: SHA-256 over each file's name (not its
/// directory) and its SHA-256, in name order. The same files give the same
/// hash wherever they are read from, so an exported copy of the embedded set
/// shows it is unchanged.
pub fn set_digest(loaded: &[LoadedPlaybook]) -> String {
    use sha2::{Digest, Sha256};
    let mut files: Vec<(String, &str)> = loaded
        .iter()
        .map(|p| {
            let name = p
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p.sha256.as_str())
        })
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for (name, sha) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(sha.as_bytes());
        hasher.update([b'\n']);
    }
    format!("{:x}", hasher.finalize())
}

/// Validates playbooks given as `(file name, text)`, e.g. the set embedded in
/// a binary, shown as `<origin>/<name>` in problems. Same checks as
/// [`load_playbooks`].
pub fn load_playbook_texts(
    origin: &str,
    texts: &[(&str, &str)],
) -> Result<Vec<LoadedPlaybook>, Vec<Problem>> {
    let sources = texts
        .iter()
        .map(|(name, text)| {
            let text = if text.len() > yaml::MAX_BYTES {
                Err(too_big())
            } else {
                Ok((*text).to_string())
            };
            (Path::new(origin).join(name), text)
        })
        .collect();
    validate_sources(sources)
}

/// Loads every `*.yaml`/`*.yml` in `dir` (or the one file `dir` names) and
/// validates each and all together. Any problem ⇒ every problem, sorted.
pub fn load_playbooks(path: &Path) -> Result<Vec<LoadedPlaybook>, Vec<Problem>> {
    let files = match playbook_files(path) {
        Ok(files) => files,
        Err(problem) => return Err(vec![problem]),
    };
    if files.is_empty() {
        return Err(vec![Problem {
            file: path.display().to_string(),
            location: None,
            path: String::new(),
            message: "no playbook files (*.yaml, *.yml) here".to_string(),
            hint: Some("point --playbooks at the directory holding your playbooks".to_string()),
        }]);
    }
    let sources = files
        .into_iter()
        .map(|file| {
            let text = read_playbook(&file);
            (file, text)
        })
        .collect();
    validate_sources(sources)
}

/// Validates each source and all together. Any problem ⇒ every problem, sorted.
fn validate_sources(
    sources: Vec<(PathBuf, Result<String, String>)>,
) -> Result<Vec<LoadedPlaybook>, Vec<Problem>> {
    use sha2::{Digest, Sha256};
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (file, text) in sources {
        let shown = file.display().to_string();
        match text {
            Ok(text) => match validate_document(&text, &shown) {
                Ok((playbook, doc)) => loaded.push(LoadedPlaybook {
                    file,
                    playbook,
                    sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
                    match_location: doc.locate("match"),
                    name_location: doc.locate("name"),
                }),
                Err(mut found) => problems.append(&mut found),
            },
            Err(message) => problems.push(Problem {
                file: shown,
                location: None,
                path: String::new(),
                message,
                hint: None,
            }),
        }
    }
    problems.extend(cross_file_problems(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        problems.sort();
        problems.dedup();
        Err(problems)
    }
}

/// The problem of a playbook longer than [`yaml::MAX_BYTES`].
fn too_big() -> String {
    format!(
        "the file is more than the {}-byte limit for a playbook",
        yaml::MAX_BYTES
    )
}

/// Reads a playbook file, never more than one byte past [`yaml::MAX_BYTES`], so
/// a huge file is refused without being read whole.
fn read_playbook(file: &Path) -> Result<String, String> {
    let handle = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    handle
        .take(yaml::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > yaml::MAX_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text: save the playbook as UTF-8".to_string())
}

fn playbook_files(path: &Path) -> Result<Vec<PathBuf>, Problem> {
    let problem = |message: String| Problem {
        file: path.display().to_string(),
        location: None,
        path: String::new(),
        message,
        hint: None,
    };
    let meta = std::fs::metadata(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| problem(format!("cannot list: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

struct FileContext<'a> {
    file: &'a str,
    doc: &'a Document,
    problems: Vec<Problem>,
}

impl FileContext<'_> {
    fn push(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.problems
            .push(Problem::at(self.file, self.doc, path, message, hint));
    }

    /// Deserializes `value` (found at `base`), recording a located problem for every
    /// error, not just the first: serde stops at the first, so after each error the
    /// offending entry is dropped (or a missing required field stands in from
    /// `placeholders`) and deserialization runs again. Returns what could be built
    /// from the rest, if anything, and the paths that were dropped.
    fn typed<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        base: &str,
        placeholders: &[(&str, Value)],
    ) -> (Option<T>, Vec<String>) {
        const MAX_ERRORS: usize = 100;
        let mut value = value.clone();
        let mut dropped: Vec<String> = Vec::new();
        for _ in 0..MAX_ERRORS {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return (Some(v), dropped),
                Err(err) => err,
            };
            let Some(segments) = segments(err.path()) else {
                let message = err.inner().to_string();
                let hint = hint_for(&message);
                self.push(base, message, hint);
                return (None, dropped);
            };
            let message = err.inner().to_string();
            if let Some(field) = between(&message, "missing field `", "`") {
                let mut field_path = segments.clone();
                field_path.push(PathSegment::Key(field.to_string()));
                let shown = join(base, &display_path(&field_path));
                // A field we dropped for a bad value was reported already.
                if !dropped.contains(&shown) {
                    let at = join(base, &display_path(&segments));
                    self.push(&at, format!("missing `{field}`"), missing_field_hint(field));
                }
                let placeholder = placeholders.iter().find(|(name, _)| *name == field);
                match placeholder {
                    Some((_, placeholder))
                        if insert_at(&mut value, &segments, field, placeholder.clone()) =>
                    {
                        continue;
                    }
                    _ => return (None, dropped),
                }
            }
            let path = join(base, &display_path(&segments));
            let hint = hint_for(&message);
            self.push(&path, message, hint);
            match remove_at(&mut value, &segments) {
                Some(removed) => dropped.push(join(base, &display_path(&removed))),
                None => return (None, dropped),
            }
        }
        (None, dropped)
    }
}

/// One step of a path inside a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Key(String),
    Index(usize),
}

/// The path of a serde error as keys and indexes; `None` when serde could not tell.
fn segments(path: &serde_path_to_error::Path) -> Option<Vec<PathSegment>> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(PathSegment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                Some(PathSegment::Key(variant.clone()))
            }
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// `steps[2].with.tags`, the form problems and [`Document::locate`] use.
fn display_path(segments: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
            PathSegment::Key(key) if out.is_empty() => out.push_str(key),
            PathSegment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
        }
    }
    out
}

fn get_mut<'v>(value: &'v mut Value, segments: &[PathSegment]) -> Option<&'v mut Value> {
    segments.iter().try_fold(value, |v, segment| match segment {
        PathSegment::Key(key) => v.as_object_mut()?.get_mut(key),
        PathSegment::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// Drops the entry holding the value at `segments`: the nearest object key at or
/// above it (a bad list element drops the whole list, so later indexes stay true).
/// Returns the path of what was dropped.
fn remove_at(value: &mut Value, segments: &[PathSegment]) -> Option<Vec<PathSegment>> {
    let last_key = segments
        .iter()
        .rposition(|s| matches!(s, PathSegment::Key(_)))?;
    let PathSegment::Key(key) = &segments[last_key] else {
        return None;
    };
    get_mut(value, &segments[..last_key])?
        .as_object_mut()?
        .remove(key)?;
    Some(segments[..=last_key].to_vec())
}

fn insert_at(value: &mut Value, segments: &[PathSegment], field: &str, placeholder: Value) -> bool {
    match get_mut(value, segments).and_then(Value::as_object_mut) {
        Some(object) if !object.contains_key(field) => {
            object.insert(field.to_string(), placeholder);
            true
        }
        _ => false,
    }
}

fn missing_field_hint(field: &str) -> Option<String> {
    let hint = match field {
        "name" => {
            "every playbook needs a unique `name:`; it names the playbook in routing, journals and evidence"
        }
        "match" => {
            "say which findings the playbook answers, e.g. `match: {finding-types: [\"*:EC2/*\"]}`"
        }
        "id" => "every step needs an `id:`, unique in the playbook",
        "action" => "name the action to run, e.g. `action: notify`",
        _ => return None,
    };
    Some(hint.to_string())
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        (false, false) => format!("{base}.{rest}"),
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A "did you mean" for unknown names, using the expected list serde already gives.
fn hint_for(message: &str) -> Option<String> {
    if message.starts_with("invalid type") && message.ends_with("expected a sequence") {
        return Some("write a list: `[a, b]`, or one `- item` per line".to_string());
    }
    let unknown = between(message, "unknown variant `", "`")
        .or_else(|| between(message, "unknown field `", "`"))?;
    let expected = message.split_once("expected ").map(|(_, e)| e)?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(unknown, c), *c))
        .min()
        .filter(|(d, c)| *d <= (c.len() / 2).max(2));
    match best {
        Some((_, c)) => Some(format!("did you mean `{c}`?")),
        None if message.contains("unknown variant") && candidates.len() > 1 => {
            Some(format!("valid values: {}", candidates.join(", ")))
        }
        None => None,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Validates one playbook's text. `file` names it in problems.
pub fn validate_text(text: &str, file: &str) -> Result<(Playbook, Option<Location>), Vec<Problem>> {
    validate_document(text, file).map(|(playbook, doc)| (playbook, doc.locate("match")))
}

/// [`validate_text`], keeping the parsed document so callers can locate more paths.
fn validate_document(text: &str, file: &str) -> Result<(Playbook, Document), Vec<Problem>> {
    let doc = parse_located(text, file)?;
    let mut cx = FileContext {
        file,
        doc: &doc,
        problems: Vec::new(),
    };
    let Value::Object(top) = &doc.value else {
        cx.push(
            "",
            "a playbook must be a YAML mapping (name, match, steps, ...)",
            None,
        );
        return Err(cx.problems);
    };
    // The header without steps, then each step on its own: one bad step does not hide the others.
    let mut header = top.clone();
    let steps_value = header.insert("steps".to_string(), Value::Array(Vec::new()));
    // Stand-ins for missing required fields, so the rest of the header is still checked.
    let placeholders = [
        ("name", Value::String("unnamed".to_string())),
        ("match", Value::Object(Default::default())),
    ];
    let (header, dropped): (Option<Playbook>, _) =
        cx.typed(&Value::Object(header), "", &placeholders);
    let mut steps = Vec::new();
    match &steps_value {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let base = format!("steps[{i}]");
                let (Some(document), _) = cx.typed::<StepDocument>(item, &base, &[]) else {
                    continue;
                };
                let with = document
                    .with
                    .clone()
                    .unwrap_or_else(|| Value::Object(Default::default()));
                let tagged = serde_json::json!({ "action": document.action, "with": with });
                // Problems inside `with` name the action whose parameters they are.
                let before = cx.problems.len();
                let (action, _) = cx.typed::<Action>(&tagged, &base, &[]);
                for problem in &mut cx.problems[before..] {
                    problem.message = format!("`{}`: {}", document.action, problem.message);
                }
                if let Some(with) = &document.with {
                    // capture-memory's command takes the upload URL, filled
                    // in when the command is sent, not by the planner.
                    let also: &[&str] = match document.action {
                        ActionKind::CaptureMemory => &[crate::action::UPLOAD_URL_PLACEHOLDER],
                        _ => &[],
                    };
                    check_placeholders(&mut cx, &format!("{base}.with"), with, also);
                }
                // Kept even when a parameter was dropped, so the step's own checks still run;
                // the file fails on the problems recorded above either way.
                if let Some(action) = action {
                    steps.push((
                        i,
                        Step {
                            id: document.id,
                            description: document.description,
                            action,
                            approval: document.approval,
                            approvers: document.approvers,
                            self_approval: document.self_approval,
                            retry: document.retry,
                            on_failure: document.on_failure,
                            needs: document.needs,
                        },
                    ));
                }
            }
        }
        Some(_) => cx.push("steps", "`steps` must be a list of steps", None),
        None => cx.push(
            "",
            "missing `steps`",
            Some("list the actions to run under `steps:`".to_string()),
        ),
    }
    if let Some(header) = &header {
        check_header(&mut cx, header, &dropped);
        let typed_steps: Vec<&(usize, Step)> = steps.iter().collect();
        check_steps(&mut cx, header, &typed_steps, steps_value.as_ref());
    }
    let Some(mut playbook) = header.filter(|_| cx.problems.is_empty()) else {
        let mut problems = cx.problems;
        problems.sort();
        problems.dedup();
        return Err(problems);
    };
    playbook.steps = steps.into_iter().map(|(_, s)| s).collect();
    Ok((playbook, doc))
}

/// Checks serde cannot make. `dropped` lists paths already reported and left out,
/// so their absence is not reported a second time.
fn check_header(cx: &mut FileContext<'_>, playbook: &Playbook, dropped: &[String]) {
    if playbook.name.trim().is_empty() {
        cx.push("name", "the playbook name is empty", None);
    } else if !playbook
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        cx.push(
            "name",
            format!(
                "name {:?} has characters outside [A-Za-z0-9_-]",
                playbook.name
            ),
            Some("names appear in journals, evidence keys and tags".to_string()),
        );
    }
    check_bound(cx, "priority", playbook.priority, &limits::PRIORITY);
    let rule = &playbook.matcher;
    for (name, count) in [
        ("finding-types", rule.finding_types.len()),
        ("exclude-finding-types", rule.exclude_finding_types.len()),
        ("resource-types", rule.resource_types.len()),
        ("user-types", rule.user_types.len()),
        ("config-rules", rule.config_rules.len()),
        ("products", rule.products.len()),
        ("asff-types", rule.asff_types.len()),
    ] {
        if count > MAX_MATCH_ENTRIES {
            cx.push(
                &format!("match.{name}"),
                format!("{count} entries, more than the {MAX_MATCH_ENTRIES} allowed"),
                Some("use `*` patterns, or split the playbook".to_string()),
            );
        }
    }
    for (i, pattern) in rule.finding_types.iter().enumerate() {
        check_pattern(cx, &format!("match.finding-types[{i}]"), pattern);
    }
    for (i, pattern) in rule.exclude_finding_types.iter().enumerate() {
        check_pattern(cx, &format!("match.exclude-finding-types[{i}]"), pattern);
    }
    for (name, patterns) in [
        ("config-rules", &rule.config_rules),
        ("products", &rule.products),
        ("asff-types", &rule.asff_types),
    ] {
        for (i, pattern) in patterns.iter().enumerate() {
            check_text_pattern(cx, &format!("match.{name}[{i}]"), pattern);
        }
    }
    let sources = rule_sources(rule);
    if sources.is_empty() {
        cx.push(
            "match",
            "no finding can match: the rule's keys belong to different sources",
            Some(
                "`config-rules` and Config resource types (`AWS::…`) match only Config evaluations,                  `asff-types` and Security Hub resource types (`Aws…`) only Security Hub findings,                  `products` and `severity-labels` never Config; check `sources`"
                    .to_string(),
            ),
        );
    } else if sources == [Source::Config] && rule.severity.is_some() {
        cx.push(
            "match.severity",
            "the rule matches only Config evaluations, which have no severity",
            Some("match them by `config-rules` and `resource-types`".to_string()),
        );
    }
    for (i, resource) in rule.resource_types.iter().enumerate() {
        if !KNOWN_RESOURCE_TYPES.contains(&resource.as_str())
            && !SOURCE_RESOURCE_TYPES.contains(&resource.as_str())
        {
            // cordon's own names first: they match every source.
            let hint = Some(closest(resource, KNOWN_RESOURCE_TYPES, "known types"))
                .filter(|h| h.starts_with("did you mean"))
                .unwrap_or_else(|| closest(resource, SOURCE_RESOURCE_TYPES, "known types"));
            cx.push(
                &format!("match.resource-types[{i}]"),
                format!("unknown resource type {resource:?}"),
                Some(hint),
            );
        }
    }
    for (i, user_type) in rule.user_types.iter().enumerate() {
        if !KNOWN_USER_TYPES.contains(&user_type.as_str()) {
            cx.push(
                &format!("match.user-types[{i}]"),
                format!("unknown access-key user type {user_type:?}"),
                Some(closest(user_type, KNOWN_USER_TYPES, "known user types")),
            );
        }
    }
    if !rule.user_types.is_empty() {
        let other: Vec<&String> = rule
            .resource_types
            .iter()
            .filter(|r| !matches!(r.as_str(), "AccessKey" | "AwsIamAccessKey"))
            .collect();
        if !other.is_empty() {
            cx.push(
                "match.user-types",
                format!(
                    "user types only exist on access-key findings, but the rule also matches {}",
                    other
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("match `resource-types: [AccessKey]`, or drop `user-types`".to_string()),
            );
        }
    }
    if let Some(severity) = &rule.severity {
        let part_dropped = dropped.iter().any(|d| d.starts_with("match.severity"));
        if severity.bands.is_empty()
            && severity.min.is_none()
            && severity.max.is_none()
            && !part_dropped
        {
            cx.push(
                "match.severity",
                "empty severity rule",
                Some("give `bands`, `min` or `max`, or remove `severity`".to_string()),
            );
        }
        for (key, value) in [("min", severity.min), ("max", severity.max)] {
            if let Some(v) = value
                && Severity::new(v).is_err()
            {
                cx.push(
                    &format!("match.severity.{key}"),
                    format!(
                        "{v} is outside GuardDuty's severity range {}-{}",
                        Severity::MIN,
                        Severity::MAX
                    ),
                    None,
                );
            }
        }
        if let (Some(min), Some(max)) = (severity.min, severity.max)
            && min > max
        {
            cx.push(
                "match.severity",
                format!("min {min} is above max {max}: nothing can match"),
                None,
            );
        } else if !severity.bands.is_empty() && severity_intervals(rule).is_empty() {
            cx.push(
                "match.severity",
                "the bands and the min/max range do not overlap: nothing can match",
                None,
            );
        }
    }
}

/// "did you mean" the known name nearest to `name` (ignoring case), or the list of them.
fn closest(name: &str, known: &[&str], what: &str) -> String {
    known
        .iter()
        .map(|k| (edit_distance(&name.to_lowercase(), &k.to_lowercase()), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| format!("did you mean `{k}`?"))
        .unwrap_or_else(|| format!("{what}: {}", known.join(", ")))
}

/// Longest finding-type pattern: checking two playbooks for overlap costs the
/// product of their patterns' lengths.
pub const MAX_PATTERN_CHARS: usize = 128;
/// Most entries in one `match` list, for the same reason.
pub const MAX_MATCH_ENTRIES: usize = 32;

/// A pattern over names that may hold spaces (Security Hub types and
/// products, Config rule names): not blank, printable, not too long.
fn check_text_pattern(cx: &mut FileContext<'_>, path: &str, pattern: &str) {
    if pattern.trim().is_empty() {
        cx.push(path, "empty pattern", None);
    } else if pattern.chars().count() > MAX_PATTERN_CHARS {
        cx.push(
            path,
            format!("the pattern is longer than {MAX_PATTERN_CHARS} characters"),
            Some("use `*` for the varying part".to_string()),
        );
    } else if pattern.chars().any(char::is_control) {
        cx.push(path, format!("{pattern:?} holds control characters"), None);
    }
}

fn check_pattern(cx: &mut FileContext<'_>, path: &str, pattern: &str) {
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        cx.push(
            path,
            format!("the pattern is longer than {MAX_PATTERN_CHARS} characters"),
            Some(
                "GuardDuty types are under 100 characters; use `*` for the varying part"
                    .to_string(),
            ),
        );
    } else if pattern.trim().is_empty() {
        cx.push(path, "empty finding-type pattern", None);
    } else if pattern.chars().any(char::is_whitespace) {
        cx.push(
            path,
            format!("{pattern:?} contains whitespace; GuardDuty types never do"),
            None,
        );
    } else if !patterns_intersect(pattern, "*") {
        // Matches no `Purpose:Resource/Family…` string, e.g. `Backdoor` or `Recon:EC2`.
        cx.push(
            path,
            format!("{pattern:?} cannot match a GuardDuty type"),
            Some(
                "types look like `Purpose:Resource/Family.Mechanism!Artifact`, e.g. `Backdoor:EC2/C&CActivity.B`; \
                 use `*` for any run of characters, e.g. `Backdoor:EC2/*`"
                    .to_string(),
            ),
        );
    }
}

/// Every `{name}` in a parameter must be one the planner fills, or one of
/// `also` (the action's own): an unknown one would reach AWS verbatim (a tag
/// value reading `{case-id}`).
fn check_placeholders(cx: &mut FileContext<'_>, path: &str, value: &Value, also: &[&str]) {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(open) = rest.find('{') {
                rest = &rest[open..];
                let Some(close) = rest.find('}') else { break };
                let candidate = &rest[..=close];
                let name = &candidate[1..candidate.len() - 1];
                let looks_like_one = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if looks_like_one
                    && !PLACEHOLDERS.contains(&candidate)
                    && !also.contains(&candidate)
                {
                    let hint = PLACEHOLDERS
                        .iter()
                        .map(|p| (edit_distance(candidate, p), *p))
                        .min()
                        .filter(|(d, _)| *d <= 3)
                        .map(|(_, p)| format!("did you mean `{p}`?"))
                        .unwrap_or_else(|| format!("placeholders: {}", PLACEHOLDERS.join(", ")));
                    cx.push(
                        path,
                        format!("unknown placeholder `{candidate}`"),
                        Some(hint),
                    );
                }
                rest = &rest[1..];
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_placeholders(cx, &format!("{path}[{i}]"), item, also);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                check_placeholders(cx, &join(path, key), item, also);
            }
        }
        _ => {}
    }
}

fn check_steps(
    cx: &mut FileContext<'_>,
    playbook: &Playbook,
    steps: &[&(usize, Step)],
    raw_steps: Option<&Value>,
) {
    if let Some(Value::Array(items)) = raw_steps
        && items.is_empty()
    {
        cx.push(
            "steps",
            "the playbook has no steps",
            Some("a notify-only playbook has one `notify` step".to_string()),
        );
    }
    check_needs(cx, steps);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, step) in steps {
        let base = format!("steps[{i}]");
        if step.id.trim().is_empty() {
            cx.push(&format!("{base}.id"), "empty step id", None);
        } else if step.id.chars().any(|c| c.is_whitespace()) {
            cx.push(
                &format!("{base}.id"),
                format!("step id {:?} contains whitespace", step.id),
                Some("ids are typed in `--approve STEP`; use kebab-case".to_string()),
            );
        } else if step.id.chars().any(needs_escape) {
            cx.push(
                &format!("{base}.id"),
                format!(
                    "step id {} holds control or invisible characters",
                    preview(&step.id)
                ),
                Some("ids are typed in `--approve STEP`; use kebab-case".to_string()),
            );
        }
        check_approvers(cx, &base, &step.approvers);
        if let Some(first) = seen.insert(&step.id, *i) {
            cx.push(
                &format!("{base}.id"),
                format!(
                    "duplicate step id `{}` (first used by steps[{first}])",
                    step.id
                ),
                Some("step ids name steps in journals and approvals; make each unique".to_string()),
            );
        }
        if step.retry.max_attempts == 0 {
            cx.push(
                &format!("{base}.retry.max-attempts"),
                "max-attempts must be at least 1 (1 = no retry)",
                None,
            );
        } else {
            check_bound(
                cx,
                &format!("{base}.retry.max-attempts"),
                step.retry.max_attempts,
                &limits::MAX_ATTEMPTS,
            );
        }
        for (name, value) in [
            ("initial-backoff-ms", step.retry.initial_backoff_ms),
            ("max-backoff-ms", step.retry.max_backoff_ms),
        ] {
            check_bound(
                cx,
                &format!("{base}.retry.{name}"),
                value,
                &limits::BACKOFF_MS,
            );
        }
        check_action_bounds(cx, &base, &step.action);
        if step.retry.initial_backoff_ms > step.retry.max_backoff_ms {
            cx.push(
                &format!("{base}.retry"),
                "initial-backoff-ms is above max-backoff-ms",
                None,
            );
        }
        let target = step.action.kind().target_kind();
        let mismatch = target_mismatch(&playbook.matcher, target, step.action.kind())
            .or_else(|| user_type_mismatch(&playbook.matcher, target, step.action.kind()));
        if let Some(message) = mismatch {
            cx.push(
                &format!("{base}.action"),
                message,
                Some(
                    "match the playbook to findings this action can act on, or remove the step"
                        .to_string(),
                ),
            );
        }
    }
}

/// `needs`: every entry names another step of the playbook, once, and the
/// steps form no cycle (a cycle would leave its steps waiting for each other
/// forever). Approval gates cannot deadlock the graph: a gated step is asked
/// for when its own needs are done, whatever its place in the file, and the
/// steps that do not need it run meanwhile.
fn check_needs(cx: &mut FileContext<'_>, steps: &[&(usize, Step)]) {
    let ids: Vec<&str> = steps.iter().map(|(_, s)| s.id.as_str()).collect();
    for (i, step) in steps {
        let Some(needs) = &step.needs else {
            continue;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (j, need) in needs.iter().enumerate() {
            let path = format!("steps[{i}].needs[{j}]");
            if *need == step.id {
                cx.push(
                    &path,
                    format!("step `{}` needs itself", step.id),
                    Some("list only the other steps that must be done first".to_string()),
                );
            } else if !ids.contains(&need.as_str()) {
                cx.push(
                    &path,
                    format!(
                        "step `{}` needs {}, which is not a step of this playbook",
                        step.id,
                        preview(need)
                    ),
                    Some(closest(need, &ids, "step ids")),
                );
            } else if seen.contains(&need.as_str()) {
                cx.push(
                    &path,
                    format!("step `{}` needs `{need}` twice", step.id),
                    None,
                );
            }
            seen.push(need);
        }
    }
    for cycle in needs_cycles(steps) {
        let (i, first) = steps[cycle[0]];
        let names: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&cycle[0]))
            .map(|k| steps[*k].1.id.as_str())
            .collect();
        cx.push(
            &format!("steps[{i}].needs"),
            format!(
                "the needs of step `{}` form a cycle: {}",
                first.id,
                names.join(" → ")
            ),
            Some(
                "a step cannot wait for a step that waits for it; remove one of these needs"
                    .to_string(),
            ),
        );
    }
}

/// Every cycle of `needs` (unknown ids ignored), each once, as positions in
/// `steps`, starting at its step earliest in the file.
fn needs_cycles(steps: &[&(usize, Step)]) -> Vec<Vec<usize>> {
    let position = |id: &str| steps.iter().position(|(_, s)| s.id == id);
    let edges: Vec<Vec<usize>> = steps
        .iter()
        .map(|(_, s)| {
            s.needs
                .iter()
                .flatten()
                .filter_map(|n| position(n))
                .filter(|k| steps[*k].1.id != s.id)
                .collect()
        })
        .collect();
    // Colours: 0 unvisited, 1 on the current path, 2 finished.
    let mut colour = vec![0u8; steps.len()];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..steps.len() {
        if colour[start] != 0 {
            continue;
        }
        let mut path = vec![start];
        let mut next_edge = vec![0usize];
        colour[start] = 1;
        while let Some(&node) = path.last() {
            let depth = path.len() - 1;
            if let Some(&to) = edges[node].get(next_edge[depth]) {
                next_edge[depth] += 1;
                match colour[to] {
                    0 => {
                        colour[to] = 1;
                        path.push(to);
                        next_edge.push(0);
                    }
                    1 => {
                        let from = path.iter().position(|n| *n == to).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map(|(k, _)| k);
                        cycle.rotate_left(min.unwrap_or(0));
                        if !cycles.contains(&cycle) {
                            cycles.push(cycle);
                        }
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                path.pop();
                next_edge.pop();
            }
        }
    }
    cycles
}

/// `approvers`: IAM/STS ARN patterns, few and short, printable.
fn check_approvers(cx: &mut FileContext<'_>, base: &str, approvers: &[String]) {
    if approvers.len() > MAX_MATCH_ENTRIES {
        cx.push(
            &format!("{base}.approvers"),
            format!(
                "{} entries, more than the {MAX_MATCH_ENTRIES} allowed",
                approvers.len()
            ),
            Some("use `*` in a pattern, e.g. one role's every session".to_string()),
        );
    }
    for (j, pattern) in approvers.iter().enumerate() {
        let path = format!("{base}.approvers[{j}]");
        if !pattern.starts_with("arn:") || pattern.chars().count() > MAX_APPROVER_CHARS {
            cx.push(
                &path,
                format!("{} is not an ARN pattern", preview(pattern)),
                Some(
                    "e.g. `arn:aws:sts::111122223333:assumed-role/IncidentLead/*` or `arn:aws:iam::111122223333:user/alice`"
                        .to_string(),
                ),
            );
        } else if pattern
            .chars()
            .any(|c| c.is_whitespace() || needs_escape(c))
        {
            cx.push(
                &path,
                format!("{} holds spaces or control characters", preview(pattern)),
                None,
            );
        }
    }
}

/// The longest approver pattern (IAM ARNs are at most 2,048 characters).
pub const MAX_APPROVER_CHARS: usize = 2048;

/// Bounds on every number a playbook sets, so a typo or a hostile playbook
/// cannot make a step wait for years, retry forever or outrank everything.
pub mod limits {
    use super::Bound;

    pub const PRIORITY: Bound<i32> = Bound {
        range: -10_000..=10_000,
        unit: "",
        why: "priorities only order playbooks; keep them small",
    };
    pub const MAX_ATTEMPTS: Bound<u32> = Bound {
        range: 1..=10,
        unit: "attempts",
        why: "more attempts only delay containment; the SDK retries throttling underneath",
    };
    pub const BACKOFF_MS: Bound<u64> = Bound {
        range: 0..=300_000,
        unit: "ms",
        why: "a single back-off longer than 5 minutes stalls containment",
    };
    pub const SNAPSHOT_WAIT_SECONDS: Bound<u64> = Bound {
        range: 1..=21_600,
        unit: "seconds",
        why: "wait at most 6 hours for snapshots; large volumes complete later on their own",
    };
    pub const DETECTIVE_LOOKBACK_HOURS: Bound<u32> = Bound {
        range: 1..=8_760,
        unit: "hours",
        why: "Detective keeps at most a year of data",
    };
    pub const MAX_PUBLIC_SNAPSHOTS: Bound<u32> = Bound {
        range: 1..=1_000,
        unit: "snapshots",
        why: "the cap is a blast-radius guard: past a thousand public snapshots, look at them and act in batches",
    };
    pub const DETECTIVE_TIMEOUT_SECONDS: Bound<u64> = Bound {
        range: 1..=900,
        unit: "seconds",
        why: "enrichment is best effort: poll at most 15 minutes",
    };
}

/// An inclusive range a numeric parameter must fall in, and why.
#[derive(Debug)]
pub struct Bound<T> {
    pub range: RangeInclusive<T>,
    pub unit: &'static str,
    pub why: &'static str,
}

fn check_bound<T: PartialOrd + fmt::Display>(
    cx: &mut FileContext<'_>,
    path: &str,
    value: T,
    bound: &Bound<T>,
) {
    if !bound.range.contains(&value) {
        let unit = if bound.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", bound.unit)
        };
        let name = path.rsplit('.').next().unwrap_or(path);
        cx.push(
            path,
            format!(
                "{name} {value} is out of range: allowed {} to {}{unit}",
                bound.range.start(),
                bound.range.end()
            ),
            Some(bound.why.to_string()),
        );
    }
}

/// The numeric parameters of actions that have them.
fn check_action_bounds(cx: &mut FileContext<'_>, base: &str, action: &Action) {
    match action {
        Action::CaptureMemory(p) => {
            if !p.command.contains(crate::action::UPLOAD_URL_PLACEHOLDER) {
                cx.push(
                    &format!("{base}.with.command"),
                    format!(
                        "the command never uses {}: the image would have nowhere to go",
                        crate::action::UPLOAD_URL_PLACEHOLDER
                    ),
                    Some("pass the upload URL to the tool, e.g. `avml --url '{upload_url}' /var/tmp/m.lime`".to_string()),
                );
            }
            // A presigned URL is valid for at most seven days.
            if p.time_budget_seconds == 0 || p.time_budget_seconds > 604_800 {
                cx.push(
                    &format!("{base}.with.time-budget-seconds"),
                    format!("{} is outside 1..=604800 seconds", p.time_budget_seconds),
                    Some("give the acquisition minutes to an hour: containment waits for nothing, evidence waits this long".to_string()),
                );
            }
        }
        Action::RevokeOpenIngress(p) if p.ports.is_empty() => {
            cx.push(
                &format!("{base}.with.ports"),
                "no ports: the step would revoke nothing".to_string(),
                Some(
                    "name the ports whose world-open ingress to revoke, e.g. [22, 3389]"
                        .to_string(),
                ),
            );
        }
        Action::SnapshotVolumes(p) => {
            if let Some(seconds) = p.wait_timeout_seconds {
                check_bound(
                    cx,
                    &format!("{base}.with.wait-timeout-seconds"),
                    seconds,
                    &limits::SNAPSHOT_WAIT_SECONDS,
                );
            }
        }
        Action::MakeAccountSnapshotsPrivate(p) => check_bound(
            cx,
            &format!("{base}.with.max-snapshots"),
            p.max_snapshots,
            &limits::MAX_PUBLIC_SNAPSHOTS,
        ),
        Action::EnrichWithDetective(p) => {
            check_bound(
                cx,
                &format!("{base}.with.lookback-hours"),
                p.lookback_hours,
                &limits::DETECTIVE_LOOKBACK_HOURS,
            );
            check_bound(
                cx,
                &format!("{base}.with.timeout-seconds"),
                p.timeout_seconds,
                &limits::DETECTIVE_TIMEOUT_SECONDS,
            );
        }
        Action::TagResource(_)
        | Action::EnableTerminationProtection(_)
        | Action::IsolateInstance(_)
        | Action::DetachInstanceProfile(_)
        | Action::RevokeRoleSessions(_)
        | Action::RevokeUserSessions(_)
        | Action::DetachFromAutoscaling(_)
        | Action::DeregisterFromLoadBalancers(_)
        | Action::DeactivateAccessKey(_)
        | Action::RotateAccessKey(_)
        | Action::QuarantineUser(_)
        | Action::DeleteLoginProfile(_)
        | Action::CaptureInstanceMetadata(_)
        | Action::CaptureConsoleOutput(_)
        | Action::StoreEvidence(_)
        | Action::Notify(_)
        | Action::EnforceImdsv2(_)
        | Action::BlockBucketPublicAccess(_)
        | Action::RevokeOpenIngress(_)
        | Action::MakeSnapshotPrivate(_) => {}
    }
}

fn target_mismatch(rule: &MatchRule, target: TargetKind, kind: ActionKind) -> Option<String> {
    if rule.resource_types.is_empty() {
        return None;
    }
    let fits = |resource: &str| {
        target == TargetKind::Case || target_resource_names(target).contains(&resource)
    };
    (!rule.resource_types.iter().any(|r| fits(r))).then(|| {
        format!(
            "`{kind}` acts on {} but the playbook only matches {} findings",
            match target {
                TargetKind::Instance => "an instance",
                TargetKind::AccessKey => "an access key",
                TargetKind::User => "an IAM user",
                TargetKind::Role => "a role",
                TargetKind::Case => "the case",
                TargetKind::Bucket => "a bucket",
                TargetKind::SecurityGroup => "a security group",
                TargetKind::Snapshot => "a snapshot",
                TargetKind::Account => "an account",
            },
            rule.resource_types.join("/")
        )
    })
}

/// A step whose target the rule's user types can never resolve: a role comes
/// from an assumed-role key, a user (or its long-term key) from an IAM user's.
fn user_type_mismatch(rule: &MatchRule, target: TargetKind, kind: ActionKind) -> Option<String> {
    if rule.user_types.is_empty() {
        return None;
    }
    let needs = match target {
        TargetKind::User | TargetKind::AccessKey => "IAMUser",
        TargetKind::Role => "AssumedRole",
        TargetKind::Instance
        | TargetKind::Case
        | TargetKind::Bucket
        | TargetKind::SecurityGroup
        | TargetKind::Snapshot
        | TargetKind::Account => return None,
    };
    (!rule.user_types.iter().any(|t| t == needs)).then(|| {
        format!(
            "`{kind}` needs a key of user type {needs}, but the playbook only matches user types {:?}",
            rule.user_types
        )
    })
}

/// Severity values a rule accepts, as closed intervals.
fn severity_intervals(rule: &MatchRule) -> Vec<(f64, f64)> {
    const JUST_BELOW: f64 = 1e-9;
    let (lo, hi) = match &rule.severity {
        Some(s) => (
            s.min.unwrap_or(Severity::MIN),
            s.max.unwrap_or(Severity::MAX),
        ),
        None => (Severity::MIN, Severity::MAX),
    };
    let bands: Vec<SeverityBand> = match &rule.severity {
        Some(s) if !s.bands.is_empty() => s.bands.clone(),
        _ => vec![
            SeverityBand::Low,
            SeverityBand::Medium,
            SeverityBand::High,
            SeverityBand::Critical,
        ],
    };
    bands
        .iter()
        .map(|band| match band {
            SeverityBand::Low => (1.0, 4.0 - JUST_BELOW),
            SeverityBand::Medium => (4.0, 7.0 - JUST_BELOW),
            SeverityBand::High => (7.0, 9.0 - JUST_BELOW),
            SeverityBand::Critical => (9.0, 10.0),
        })
        .map(|(a, b): (f64, f64)| (a.max(lo), b.min(hi)))
        .filter(|(a, b)| a <= b)
        .collect()
}

/// Could one finding satisfy both rules? Exact for types, resources, severity,
/// role and key kind; exclusions are ignored (so the answer errs towards "yes").
pub fn rules_overlap(a: &MatchRule, b: &MatchRule) -> bool {
    let types = a.finding_types.is_empty()
        || b.finding_types.is_empty()
        || a.finding_types
            .iter()
            .any(|p| b.finding_types.iter().any(|q| patterns_intersect(p, q)));
    let resources = a.resource_types.is_empty()
        || b.resource_types.is_empty()
        || a.resource_types
            .iter()
            .any(|r| b.resource_types.contains(r));
    let severity = severity_intervals(a).iter().any(|(a0, a1)| {
        severity_intervals(b)
            .iter()
            .any(|(b0, b1)| a0 <= b1 && b0 <= a1)
    });
    let role = match (a.resource_role, b.resource_role) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    let key = match (a.key_kind, b.key_kind) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    let users = a.user_types.is_empty()
        || b.user_types.is_empty()
        || a.user_types.iter().any(|t| b.user_types.contains(t));
    let sources = rule_sources(a).iter().any(|s| rule_sources(b).contains(s));
    let labels = a.severity_labels.is_empty()
        || b.severity_labels.is_empty()
        || a.severity_labels
            .iter()
            .any(|l| b.severity_labels.contains(l));
    let text = |x: &[String], y: &[String]| {
        x.is_empty()
            || y.is_empty()
            || x.iter()
                .any(|p| y.iter().any(|q| text_patterns_may_meet(p, q)))
    };
    types
        && resources
        && severity
        && role
        && key
        && users
        && sources
        && labels
        && text(&a.config_rules, &b.config_rules)
        && text(&a.products, &b.products)
        && text(&a.asff_types, &b.asff_types)
}

/// Could one name match both wildcard patterns (`*` any run, `?` one
/// character)? Exact, by a memoised walk over both patterns.
fn text_patterns_may_meet(a: &str, b: &str) -> bool {
    fn meet(
        a: &[char],
        b: &[char],
        i: usize,
        j: usize,
        memo: &mut [Option<bool>],
        w: usize,
    ) -> bool {
        if let Some(known) = memo[i * w + j] {
            return known;
        }
        let out = if i < a.len() && a[i] == '*' {
            meet(a, b, i + 1, j, memo, w) || (j < b.len() && meet(a, b, i, j + 1, memo, w))
        } else if j < b.len() && b[j] == '*' {
            meet(a, b, i, j + 1, memo, w) || (i < a.len() && meet(a, b, i + 1, j, memo, w))
        } else if i < a.len() && j < b.len() {
            (a[i] == '?' || b[j] == '?' || a[i] == b[j]) && meet(a, b, i + 1, j + 1, memo, w)
        } else {
            i == a.len() && j == b.len()
        };
        memo[i * w + j] = Some(out);
        out
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut memo = vec![None; (a.len() + 1) * w];
    meet(&a, &b, 0, 0, &mut memo, w)
}

/// Is there a well-formed GuardDuty type (exactly one `:`, then exactly one `/`)
/// that both wildcard patterns match? Raw glob intersection is not enough:
/// `*:IAMUser/*` and `*:EC2/*` share `a:IAMUser/b:EC2/c`, which no finding has.
pub fn patterns_intersect(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut memo = vec![[None; 3]; (a.len() + 1) * (b.len() + 1)];
    Intersection {
        a: &a,
        b: &b,
        memo: &mut memo,
    }
    .from(0, 0, 0)
}

/// Search state: positions in both patterns and how many separators the common
/// string has consumed (0: in the purpose, 1: in the resource type, 2: after `/`).
struct Intersection<'p> {
    a: &'p [char],
    b: &'p [char],
    memo: &'p mut Vec<[Option<bool>; 3]>,
}

/// A character both patterns might consume next: a literal, a separator, or
/// "any other character" (`None`).
type Candidate = Option<char>;

impl Intersection<'_> {
    fn from(&mut self, i: usize, j: usize, sep: usize) -> bool {
        let slot = i * (self.b.len() + 1) + j;
        if let Some(known) = self.memo[slot][sep] {
            return known;
        }
        self.memo[slot][sep] = Some(false);
        let result = self.search(i, j, sep);
        self.memo[slot][sep] = Some(result);
        result
    }

    fn search(&mut self, i: usize, j: usize, sep: usize) -> bool {
        let (a, b) = (self.a, self.b);
        if i == a.len() && j == b.len() && sep == 2 {
            return true;
        }
        if i < a.len() && a[i] == '*' && self.from(i + 1, j, sep) {
            return true;
        }
        if j < b.len() && b[j] == '*' && self.from(i, j + 1, sep) {
            return true;
        }
        let mut candidates: Vec<Candidate> = vec![Some(':'), Some('/'), None];
        for c in [a.get(i), b.get(j)].into_iter().flatten() {
            if !matches!(c, '*' | '?') {
                candidates.push(Some(*c));
            }
        }
        for c in candidates {
            let next_sep = match (c, sep) {
                (Some(':'), 0) => 1,
                (Some('/'), 1) => 2,
                (Some(':' | '/'), _) => continue,
                _ => sep,
            };
            let (Some(ni), Some(nj)) = (step(a, i, c), step(b, j, c)) else {
                continue;
            };
            if (ni, nj, next_sep) == (i, j, sep) {
                continue;
            }
            if self.from(ni, nj, next_sep) {
                return true;
            }
        }
        false
    }
}

/// Where pattern `p` at `i` goes after consuming `c`, if it can.
fn step(p: &[char], i: usize, c: Candidate) -> Option<usize> {
    match p.get(i)? {
        '*' => Some(i),
        '?' => Some(i + 1),
        literal => (c == Some(*literal)).then_some(i + 1),
    }
}

fn cross_file_problems(loaded: &[LoadedPlaybook]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    for p in loaded {
        if let Some(other) = names.insert(&p.playbook.name, &p.file) {
            problems.push(Problem {
                file: p.file.display().to_string(),
                location: p.name_location.map(|l| (l.line, l.column)),
                path: "name".to_string(),
                message: format!(
                    "playbook name `{}` is also used by {}",
                    p.playbook.name,
                    other.display()
                ),
                hint: Some("playbook names must be unique".to_string()),
            });
        }
    }
    for (i, a) in loaded.iter().enumerate() {
        for b in &loaded[i + 1..] {
            if a.playbook.priority == b.playbook.priority
                && rules_overlap(&a.playbook.matcher, &b.playbook.matcher)
            {
                problems.push(Problem {
                    file: b.file.display().to_string(),
                    location: b.match_location.map(|l| (l.line, l.column)),
                    path: "match".to_string(),
                    message: format!(
                        "playbook `{}` and `{}` ({}) can match the same finding with equal priority {}",
                        b.playbook.name,
                        a.playbook.name,
                        a.file.display(),
                        a.playbook.priority
                    ),
                    hint: Some("give one a higher `priority`, or narrow one `match` so they cannot overlap".to_string()),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections() {
        assert!(patterns_intersect("Backdoor:EC2/*", "*:EC2/*"));
        assert!(patterns_intersect("*", "Recon:EC2/Portscan"));
        assert!(!patterns_intersect("Backdoor:EC2/*", "Recon:EC2/*"));
        assert!(!patterns_intersect("*:IAMUser/*", "*:EC2/*"));
        assert!(patterns_intersect("*!DNS", "Backdoor:EC2/C&CActivity.B*"));
        assert!(patterns_intersect("Recon:EC2/Port?can", "*:EC2/*"));
        assert!(!patterns_intersect("Recon:EC2", "*"));
        assert!(patterns_intersect("*", "*"));
    }

    #[test]
    fn hints() {
        let h = hint_for(
            "unknown variant `isolate-instanc`, expected one of `tag-resource`, `isolate-instance`",
        );
        assert_eq!(h.as_deref(), Some("did you mean `isolate-instance`?"));
    }
}
