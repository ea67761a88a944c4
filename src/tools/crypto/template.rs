//! The name templates of cryptogen's YAML (`{{.Prefix}}{{.Index}}`,
//! `{{.Hostname}}.{{.Domain}}`, ...). Only field substitutions are
//! supported: they are all that cryptogen documents for these fields.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: unknown field .{field} (known: {known})")]
    UnknownField {
        template: String,
        field: String,
        known: String,
    },
    #[error("template {template:?}: {{{{ without a closing }}}}")]
    Unclosed { template: String },
    #[error("template {template:?}: only {{{{.Field}}}} is supported, not {{{{{action}}}}}")]
    Unsupported { template: String, action: String },
}

/// Replaces each `{{.Name}}` (spaces allowed inside the braces) by the value
/// of `Name` in `fields`.
pub fn render(template: &str, fields: &[(&str, &str)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
            template: template.to_string(),
        })?;
        let action = after[..end].trim();
        let field = action
            .strip_prefix('.')
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| TemplateError::Unsupported {
                template: template.to_string(),
                action: action.to_string(),
            })?;
        let value = fields
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| *value)
            .ok_or_else(|| TemplateError::UnknownField {
                template: template.to_string(),
                field: field.to_string(),
                known: fields
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_substituted_with_or_without_spaces() {
        let fields = [("Hostname", "peer0"), ("Domain", "org1.example.com")];
        assert_eq!(
            render("{{.Hostname}}.{{ .Domain }}", &fields).unwrap(),
            "peer0.org1.example.com"
        );
        assert_eq!(render("plain", &fields).unwrap(), "plain");
        assert_eq!(render("", &fields).unwrap(), "");
    }

    #[test]
    fn mistakes_are_named() {
        let fields = [("Hostname", "peer0")];
        let err = render("{{.Hostnam}}", &fields).unwrap_err();
        assert!(
            matches!(&err, TemplateError::UnknownField { field, .. } if field == "Hostnam"),
            "{err}"
        );
        assert!(err.to_string().contains("known: Hostname"), "{err}");
        assert!(matches!(
            render("{{.Hostname", &fields),
            Err(TemplateError::Unclosed { .. })
        ));
        let err = render("{{printf \"%d\" 1}}", &fields).unwrap_err();
        assert!(matches!(err, TemplateError::Unsupported { .. }), "{err}");
    }
}
