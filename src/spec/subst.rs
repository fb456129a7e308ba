//! `${variant}`, `${stage}` and `${params.<path>}` in cmd, deps and outs.

use serde_json::Value;

pub struct Vars<'a> {
    pub stage: &'a str,
    pub variant: Option<&'a str>,
    pub params: &'a Value,
}

/// Substitutes the pipeline's variables. Other `${...}` (shell variables
/// such as `${HOME}`) are left for the shell.
pub fn substitute(text: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        match name {
            "variant" => match vars.variant {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "`${{variant}}` used in stage `{}`, which has no variants",
                        vars.stage
                    ))
                }
            },
            "stage" => out.push_str(vars.stage),
            _ if name.starts_with("params.") => {
                let path = &name["params.".len()..];
                let value = lookup(vars.params, path).ok_or_else(|| {
                    format!(
                        "`${{{name}}}`: stage `{}` has no parameter `{path}`",
                        vars.stage
                    )
                })?;
                match value {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            _ => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(value, |v, key| v.as_object().and_then(|m| m.get(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitutes_variables() {
        let params = json!({"lr": 0.01, "opt": {"name": "adam"}});
        let vars = Vars {
            stage: "train@fast",
            variant: Some("fast"),
            params: &params,
        };
        assert_eq!(
            substitute(
                "echo ${params.lr} ${params.opt.name} > out/${variant}-${stage}.txt $HOME ${HOME}",
                &vars
            )
            .unwrap(),
            "echo 0.01 adam > out/fast-train@fast.txt $HOME ${HOME}"
        );
    }

    #[test]
    fn unknown_parameter_and_missing_variant_are_errors() {
        let params = json!({"lr": 1});
        let vars = Vars {
            stage: "a",
            variant: None,
            params: &params,
        };
        assert!(substitute("${params.nope}", &vars)
            .unwrap_err()
            .contains("no parameter `nope`"));
        assert!(substitute("${variant}", &vars)
            .unwrap_err()
            .contains("no variants"));
    }
}
