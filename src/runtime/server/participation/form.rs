//! The multipart form of a join or update request, read as Fabric's
//! handler reads it: the body bounded by `ChannelParticipation.MaxRequestBodySize`,
//! exactly one file part under the expected key, and Fabric's texts when not.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

/// Whether a request's Content-Type selects the form handler: Fabric routes
/// on the pattern `multipart/form-data*`, unanchored, against any value.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("multipart/form-dat"))
}

/// Fabric's answer to any other Content-Type: every value, as Go prints a
/// list of strings ("[text/plain]", "[]").
pub fn unsupported_content_type(headers: &HeaderMap) -> String {
    let values: Vec<String> = headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    format!("unsupported Content-Type: [{}]", values.join(" "))
}

/// The one file part of the form under `key`, or Fabric's refusal text.
pub async fn read_file_part(
    headers: &HeaderMap,
    body: Body,
    key: &str,
    max_body: usize,
) -> Result<Bytes, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let params = media_params(&content_type)
        .map_err(|e| format!("cannot parse Mime media type: mime: {e}"))?;
    let unreadable = |e: &str| format!("cannot read form from request body: {e}");
    let boundary = params
        .get("boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unreadable("multipart: boundary is empty"))?;
    let bytes = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(unreadable(
                "multipart: NextPart: http: request body too large",
            ))
        }
        Err(e) => return Err(unreadable(&e.to_string())),
    };
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary.clone());
    // As Go's ReadForm: parts with a file name are files, others values.
    let mut files: HashMap<String, Bytes> = HashMap::new();
    let mut values = 0usize;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(unreadable(&format!("multipart: {e}"))),
        };
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        let is_file = field.file_name().is_some_and(|f| !f.is_empty());
        let data = field
            .bytes()
            .await
            .map_err(|e| unreadable(&format!("multipart: {e}")))?;
        if is_file {
            // Several files under one key: the first is the one read.
            files.entry(name).or_insert(data);
        } else {
            values += 1;
        }
    }
    let Some(part) = files.get(key) else {
        return Err(format!("form does not contains part key: {key}"));
    };
    if files.len() != 1 || values != 0 {
        return Err("form contains too many parts".into());
    }
    Ok(part.clone())
}

/// The parameters of a media type (`type/subtype; key=value; ...`), keys
/// lower-cased, values unquoted: what Go's `mime.ParseMediaType` gives.
fn media_params(text: &str) -> Result<HashMap<String, String>, &'static str> {
    let mut parts = text.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if media_type.is_empty() {
        return Err("no media type");
    }
    let mut params = HashMap::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=').ok_or("invalid media parameter")?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err("invalid media parameter");
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or_else(|| value.to_string(), |v| v.replace("\\\"", "\""));
        if params.insert(key, value).is_some() {
            return Err("duplicate parameter name");
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn form(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend(format!("--{boundary}\r\n").as_bytes());
            let disposition = match file {
                Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
                None => format!("form-data; name=\"{name}\""),
            };
            body.extend(format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes());
            body.extend(*data);
            body.extend(b"\r\n");
        }
        body.extend(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("header"),
        );
        h
    }

    async fn read(content_type: &str, body: Vec<u8>, max: usize) -> Result<Bytes, String> {
        read_file_part(
            &headers(content_type),
            Body::from(body),
            "config-block",
            max,
        )
        .await
    }

    #[tokio::test]
    async fn reads_the_one_file_part() {
        let body = form("xyz", &[("config-block", Some("b.pb"), b"\x01\x02")]);
        let got = read("multipart/form-data; boundary=xyz", body, 1024)
            .await
            .expect("read");
        assert_eq!(&got[..], b"\x01\x02");
    }

    #[tokio::test]
    async fn refusals_have_fabric_texts() {
        let one = form("xyz", &[("config-block", Some("b.pb"), b"x")]);
        assert_eq!(
            read("multipart/form-data", one.clone(), 1024)
                .await
                .expect_err("no boundary"),
            "cannot read form from request body: multipart: boundary is empty"
        );
        assert_eq!(
            read("multipart/form-data; boundary=xyz", one, 4)
                .await
                .expect_err("too large"),
            "cannot read form from request body: multipart: NextPart: http: request body too large"
        );
        assert!(read("multipart/form-data; boundary", Vec::new(), 1024)
            .await
            .expect_err("bad params")
            .starts_with("cannot parse Mime media type: mime: "));

        let other = form("xyz", &[("bad-key", Some("b.pb"), b"x")]);
        assert_eq!(
            read("multipart/form-data; boundary=xyz", other, 1024)
                .await
                .expect_err("key"),
            "form does not contains part key: config-block"
        );
        // A value part under the key is not a file.
        let value = form("xyz", &[("config-block", None, b"x")]);
        assert_eq!(
            read("multipart/form-data; boundary=xyz", value, 1024)
                .await
                .expect_err("value"),
            "form does not contains part key: config-block"
        );
        let extra = form(
            "xyz",
            &[
                ("config-block", Some("b.pb"), b"x"),
                ("not-wanted", None, b"y"),
            ],
        );
        assert_eq!(
            read("multipart/form-data; boundary=xyz", extra, 1024)
                .await
                .expect_err("extra"),
            "form contains too many parts"
        );
        let two_files = form(
            "xyz",
            &[
                ("config-block", Some("b.pb"), b"x"),
                ("other", Some("o.pb"), b"y"),
            ],
        );
        assert_eq!(
            read("multipart/form-data; boundary=xyz", two_files, 1024)
                .await
                .expect_err("two"),
            "form contains too many parts"
        );
    }

    #[test]
    fn content_types_route_as_fabric_routes_them() {
        assert!(is_form(&headers("multipart/form-data; boundary=x")));
        assert!(!is_form(&headers("text/plain")));
        assert!(!is_form(&HeaderMap::new()));
        assert_eq!(
            unsupported_content_type(&headers("text/plain")),
            "unsupported Content-Type: [text/plain]"
        );
        assert_eq!(
            unsupported_content_type(&HeaderMap::new()),
            "unsupported Content-Type: []"
        );
    }
}
