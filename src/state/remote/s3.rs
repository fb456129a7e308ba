//! A remote in an S3 bucket (AWS, or an S3-compatible server named by
//! `endpoint`). Requests are signed with AWS Signature V4 as presigned
//! URLs. Credentials come from the standard places, in AWS's order: the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), then the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; profile
//! `AWS_PROFILE`, else `default`). They are never printed or written.

use super::{Backend, Trouble};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::io::Read;
use std::time::Duration;

/// How long a signed request stays valid.
const VALID: Duration = Duration::from_secs(600);

pub struct S3Remote {
    bucket: Bucket,
    prefix: String,
    credentials: Option<Credentials>,
    /// Where it is, for messages (`http://127.0.0.1:9000, bucket b`).
    place: String,
    agent: ureq::Agent,
}

impl S3Remote {
    pub fn new(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Result<Self, Trouble> {
        let region = region
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        // A custom server is addressed by path; AWS by virtual host.
        let (url, style) = match endpoint {
            Some(e) => (e.to_string(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        let bad = |e: String| Trouble {
            problem: format!("cannot address bucket `{bucket}` at {url}: {e}"),
            help: "check settings.remotes: `url: s3://bucket/prefix`, `endpoint: http://host:port`"
                .into(),
        };
        let endpoint_url = url::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
        let b = Bucket::new(endpoint_url, style, bucket.to_string(), region)
            .map_err(|e| bad(e.to_string()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build();
        Ok(S3Remote {
            bucket: b,
            prefix: prefix.to_string(),
            credentials: credentials(),
            place: format!("{url}, bucket {bucket}"),
            agent,
        })
    }

    fn object(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// What a failed request means, in words, with what to do about it.
    fn trouble(&self, what: &str, e: ureq::Error) -> Trouble {
        match e {
            ureq::Error::Status(code, resp) => {
                let body = resp.into_string().unwrap_or_default();
                let tag = |t: &str| {
                    let open = format!("<{t}>");
                    let start = body.find(&open)? + open.len();
                    let end = body[start..].find('<')? + start;
                    Some(body[start..end].to_string())
                };
                let s3_code = tag("Code").unwrap_or_default();
                match (code, s3_code.as_str()) {
                    (404, _) | (_, "NoSuchBucket") => Trouble {
                        problem: format!("the bucket does not exist ({}; {what})", self.place),
                        help: "create the bucket, or fix `url` in settings.remotes".into(),
                    },
                    (401 | 403, _) => Trouble {
                        problem: format!(
                            "the server refused the credentials ({}; {what}: {code} {s3_code})",
                            self.place
                        ),
                        help: match self.credentials {
                            None => "no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile of ~/.aws/credentials".into(),
                            Some(_) => "the key in AWS_ACCESS_KEY_ID (or the profile's) has no access to this bucket, or its secret is wrong: check them".into(),
                        },
                    },
                    _ => Trouble {
                        problem: format!("the server answered {code} {s3_code} ({}; {what})", self.place),
                        help: "try again; if it persists, check the server's log".into(),
                    },
                }
            }
            // Not the transport error's own text: it holds the request's
            // URL, whose query carries the key ID and a signature.
            ureq::Error::Transport(t) => Trouble {
                problem: redact(&format!(
                    "cannot be reached ({}; {what}: {}{})",
                    self.place,
                    t.kind(),
                    t.message().map(|m| format!(": {m}")).unwrap_or_default()
                )),
                help:
                    "check `endpoint` in settings.remotes, the network, and that the server is up"
                        .into(),
            },
        }
    }
}

impl Backend for S3Remote {
    fn check(&self) -> Result<(), Trouble> {
        let url = self
            .bucket
            .head_bucket(self.credentials.as_ref())
            .sign(VALID);
        self.agent
            .head(url.as_str())
            .call()
            .map(|_| ())
            .map_err(|e| self.trouble("looking for the bucket", e))
    }

    fn has(&self, key: &str) -> Result<bool, Trouble> {
        let obj = self.object(key);
        let url = self
            .bucket
            .head_object(self.credentials.as_ref(), &obj)
            .sign(VALID);
        match self.agent.head(url.as_str()).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(self.trouble(&format!("looking for {obj}"), e)),
        }
    }

    /// Compared by ETag, which S3 sets to the MD5 of an object written
    /// in one PUT (as this tool writes them).
    fn holds(&self, key: &str, bytes: &[u8]) -> Result<bool, Trouble> {
        use md5::Digest;
        let obj = self.object(key);
        let url = self
            .bucket
            .head_object(self.credentials.as_ref(), &obj)
            .sign(VALID);
        match self.agent.head(url.as_str()).call() {
            Ok(resp) => {
                let etag = resp
                    .header("ETag")
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string();
                let md5: String = md5::Md5::digest(bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Ok(etag == md5)
            }
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(self.trouble(&format!("looking for {obj}"), e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Trouble> {
        let obj = self.object(key);
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &obj)
            .sign(VALID);
        match self.agent.get(url.as_str()).call() {
            Ok(resp) => {
                let mut bytes = Vec::new();
                resp.into_reader()
                    .read_to_end(&mut bytes)
                    .map_err(|e| Trouble {
                        problem: redact(&format!(
                            "reading {obj} from {} broke off: {e}",
                            self.place
                        )),
                        help: "try again".into(),
                    })?;
                Ok(Some(bytes))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(self.trouble(&format!("reading {obj}"), e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Trouble> {
        let obj = self.object(key);
        let Some(creds) = &self.credentials else {
            return Err(Trouble {
                problem: format!("no credentials to write {obj} ({})", self.place),
                help: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile of ~/.aws/credentials".into(),
            });
        };
        let url = self.bucket.put_object(Some(creds), &obj).sign(VALID);
        self.agent
            .put(url.as_str())
            .send_bytes(bytes)
            .map(|_| ())
            .map_err(|e| self.trouble(&format!("writing {obj}"), e))
    }
}

/// `text` with the query of every URL in it cut off: a presigned URL's
/// query is a credential (the key ID and a signature anyone may use).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        out.push_str(&rest[..at]);
        let url_end = rest[at..]
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .map_or(rest.len(), |e| at + e);
        let url = &rest[at..url_end];
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?(query hidden)");
            }
            None => out.push_str(url),
        }
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

/// The credentials AWS's tools would use, if any.
fn credentials() -> Option<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Some(match env("AWS_SESSION_TOKEN") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        });
    }
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    profile_credentials(&text, &profile)
}

/// A profile's keys in the INI text of a shared credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| inside) else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some(match token {
        Some(t) => Credentials::new_with_token(key?, secret?, t),
        None => Credentials::new(key?, secret?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_query_never_reaches_a_message() {
        let t = "http://127.0.0.1:9/b/runs/x.json?X-Amz-Credential=AKIA%2F20261207&X-Amz-Signature=abc: Connection reset (see https://h/p?q=1)";
        let r = redact(t);
        assert_eq!(
            r,
            "http://127.0.0.1:9/b/runs/x.json?(query hidden) Connection reset (see https://h/p?(query hidden))"
        );
        assert!(!r.contains("AKIA") && !r.contains("Signature"));
    }

    #[test]
    fn a_profile_is_read_from_its_section_only() {
        let text = "[default]\naws_access_key_id = AKD\naws_secret_access_key = sd\n\n[lab]\naws_access_key_id=AKL\naws_secret_access_key=sl\naws_session_token = t\n";
        let d = profile_credentials(text, "default").unwrap();
        assert_eq!((d.key(), d.secret(), d.token()), ("AKD", "sd", None));
        let l = profile_credentials(text, "lab").unwrap();
        assert_eq!((l.key(), l.secret(), l.token()), ("AKL", "sl", Some("t")));
        assert!(profile_credentials(text, "none").is_none());
    }
}
