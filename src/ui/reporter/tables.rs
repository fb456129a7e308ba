//! Comparison tables fitted to the terminal's width.

use super::*;

/// Columns left out first when a table is too wide (by how their names
/// begin), least important first.
const DROP_FIRST: [&str; 10] = [
    "infer img/s",
    "size",
    "params",
    "train time",
    "per seed",
    "95% CI",
    "macro F1",
    "paired t p",
    "McNemar p",
    "seeds",
];

/// A comparison table as comfy-table draws it, with only columns `keep`:
/// figures to the right, words to the left.
pub(super) fn render(t: &stages::contract::Table, keep: &[usize]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(keep.iter().map(|&i| &t.columns[i]));
    for r in &t.rows {
        table.add_row(keep.iter().map(|&i| r.get(i).cloned().unwrap_or_default()));
    }
    for (k, &i) in keep.iter().enumerate() {
        let figures = t.rows.iter().all(|r| {
            r.get(i).is_some_and(|c| {
                c.starts_with(|ch: char| ch.is_ascii_digit() || "+-—<[".contains(ch))
            })
        });
        if let (true, Some(c)) = (figures && !t.rows.is_empty(), table.column_mut(k)) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}

/// The longest line of a drawn table, in characters.
pub(super) fn widest(t: &comfy_table::Table) -> usize {
    t.to_string()
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
}

/// The width printed tables fit: `COLUMNS` where set (shells export it),
/// else the terminal's; None off a terminal (a file gets the whole table).
pub(super) fn table_width() -> Option<u16> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c >= 40)
    {
        return Some(c);
    }
    // SAFETY: isatty and TIOCGWINSZ read into a struct we own.
    unsafe {
        if libc::isatty(1) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col >= 40).then_some(ws.ws_col)
    }
}

/// `text` broken at spaces into lines of at most `width` characters
/// (a word longer than that stays whole).
pub(super) fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

impl Reporter {
    /// A comparison table, drawn with comfy-table.
    pub fn table(&self, t: &stages::contract::Table) {
        let width = table_width();
        // Too wide for the terminal: the least important columns go first
        // (a note says which), then cells wrap. The whole table stays in
        // table.md, table.csv and table.json.
        let mut keep: Vec<usize> = (0..t.columns.len()).collect();
        let mut dropped = Vec::new();
        let mut table = render(t, &keep);
        if let Some(w) = width.map(usize::from) {
            for prefix in DROP_FIRST {
                if widest(&table) <= w {
                    break;
                }
                if let Some(k) = keep.iter().position(|&i| t.columns[i].starts_with(prefix)) {
                    dropped.push(t.columns[keep.remove(k)].clone());
                    table = render(t, &keep);
                }
            }
            if widest(&table) > w {
                table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
                // comfy-table may overshoot by a border or two: narrower
                // until it fits, or cannot.
                let mut target = w;
                for _ in 0..8 {
                    table.set_width(target as u16);
                    let over = widest(&table).saturating_sub(w);
                    if over == 0 || target <= over + 20 {
                        break;
                    }
                    target -= over;
                }
            }
        }
        let mut text = if t.rows.is_empty() {
            format!("\n{}\n", t.title)
        } else {
            format!("\n{}\n{table}\n", t.title)
        };
        let mut notes = t.notes.clone();
        if !dropped.is_empty() {
            notes.push(format!(
                "Left out to fit {} columns: {} (the whole table: the compare stage's table.md, or a wider terminal, or COLUMNS=...).",
                width.unwrap_or_default(),
                dropped.join(", ")
            ));
        }
        for n in &notes {
            text.push_str(&wrap(n, width.map_or(usize::MAX, usize::from)));
            text.push('\n');
        }
        self.line(text.trim_end());
        for section in &t.sections {
            self.table(section);
        }
    }
}
