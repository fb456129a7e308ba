//! Pieces of the self-contained HTML reports (compare, search, confirm).

use crate::contract::Table;
use std::fmt::Write as _;
use std::path::Path;

/// The page's head and style, up to and including `<body>`.
pub fn head(title: &str) -> String {
    format!("<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}img,svg{{max-width:100%;height:auto}}h2{{margin-top:2em}}.grid{{display:grid;grid-template-columns:1fr 1fr;gap:1em}}table.run th,table.run td{{text-align:left}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head><body>", escape(title))
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An inline picture: PNG as a data URI when there is one, else the SVG.
pub fn picture(dir: &Path, name: &str) -> Option<String> {
    if let Ok(png) = std::fs::read(dir.join(format!("{name}.png"))) {
        return Some(format!(
            "<img alt=\"{name}\" src=\"data:image/png;base64,{}\">",
            base64(&png)
        ));
    }
    std::fs::read_to_string(dir.join(format!("{name}.svg")))
        .ok()
        .map(|svg| {
            // Drop the XML prolog so the SVG can sit inside HTML.
            svg.find("<svg")
                .map_or(svg.clone(), |i| svg[i..].to_string())
        })
}

/// A table with its notes: `attrs` on the table, `th` on each header
/// cell, `between` after the table (the sort script).
pub fn table_html(t: &Table, attrs: &str, th: &str, between: &str) -> String {
    let mut h = format!("<table{attrs}><thead><tr>");
    for c in &t.columns {
        let _ = write!(h, "<th{th}>{}</th>", escape(c));
    }
    h.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", escape(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h.push_str(between);
    for n in &t.notes {
        let _ = write!(h, "<p><small>{}</small></p>", escape(n));
    }
    h
}
