//! What a stage asks of the machine it runs on (`resources:`): CPU cores,
//! GPUs, memory and a time limit. The local scheduler packs stages by
//! them; the Slurm executor turns them into sbatch flags. They never enter
//! a fingerprint: results do not depend on them.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    #[serde(default)]
    pub cpus: Option<usize>,
    #[serde(default)]
    pub gpus: Option<usize>,
    #[serde(default)]
    pub mem_mb: Option<u64>,
    #[serde(default)]
    pub time: Option<TimeLimit>,
}

/// A stage's resources, resolved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Cores; `None`: the scheduler decides (see `schedule`).
    pub cpus: Option<usize>,
    pub gpus: usize,
    pub mem_mb: Option<u64>,
    pub time: Option<TimeLimit>,
}

/// A wall-clock limit, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit(pub u64);

impl TimeLimit {
    /// Slurm's `--time` form: `D-HH:MM:SS`, or `HH:MM:SS` under a day.
    pub fn slurm(&self) -> String {
        let (d, rest) = (self.0 / 86_400, self.0 % 86_400);
        let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
        if d > 0 {
            format!("{d}-{h:02}:{m:02}:{s:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
    }
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.slurm())
    }
}

/// `30m`, `1h30m`, `2d`, `90s`; Slurm's own forms (`MM`, `MM:SS`,
/// `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`): a bare number is
/// minutes, as in Slurm. Every sum is checked: a limit too large to
/// hold is refused, never wrapped.
pub fn parse_time(text: &str) -> Result<TimeLimit, String> {
    let bad = || {
        format!("`{text}` is not a duration; write e.g. `30m`, `1h30m`, `2d`, `90s`, or as Slurm does `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`")
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let secs = if let Ok(min) = t.parse::<u64>() {
        min.checked_mul(60).ok_or_else(bad)?
    } else if t.contains(':') || t.contains('-') {
        clock(t).ok_or_else(bad)?
    } else {
        let mut total = 0u64;
        let mut num = String::new();
        let mut last_unit = usize::MAX;
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
            let u = UNITS.iter().position(|(n, _)| *n == c).ok_or_else(bad)?;
            // Units in order, each once, each with a number.
            if num.is_empty() || (last_unit != usize::MAX && u <= last_unit) {
                return Err(bad());
            }
            let n: u64 = num.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(UNITS[u].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            num.clear();
            last_unit = u;
        }
        if !num.is_empty() {
            return Err(bad());
        }
        total
    };
    if secs == 0 {
        return Err(format!(
            "`{text}` is no time at all; give a limit above zero"
        ));
    }
    Ok(TimeLimit(secs))
}

/// Slurm's clock forms, in seconds; None when malformed or too large.
fn clock(t: &str) -> Option<u64> {
    let num = |p: &str| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    };
    let fields = |c: &str| c.split(':').map(num).collect::<Option<Vec<u64>>>();
    // The leading field may run past its unit (`100:00:00`, `90:30`),
    // except hours after days.
    let (days, h, m, s) = match t.split_once('-') {
        Some((d, c)) => {
            let d = num(d)?;
            let (h, m, s) = match fields(c)?[..] {
                [h] => (h, 0, 0),
                [h, m] => (h, m, 0),
                [h, m, s] => (h, m, s),
                _ => return None,
            };
            (h < 24 && m < 60).then_some((d, h, m, s))?
        }
        // Without days Slurm reads `a:b` as minutes and seconds.
        None => match fields(t)?[..] {
            [m, s] => (0, 0, m, s),
            [h, m, s] => (m < 60).then_some((0, h, m, s))?,
            _ => return None,
        },
    };
    if s >= 60 {
        return None;
    }
    days.checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(s)
}

impl<'de> Deserialize<'de> for TimeLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Minutes(u64),
            Text(String),
        }
        let text = match Given::deserialize(d).map_err(|_| {
            de::Error::custom("time: expected a duration such as `30m` or `01:30:00`")
        })? {
            Given::Minutes(m) => m.to_string(),
            Given::Text(t) => t,
        };
        parse_time(&text).map_err(|m| de::Error::custom(format!("time: {m}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_accepted_form() {
        for (text, secs) in [
            ("30m", 1800),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("90s", 90),
            ("1d2h3m4s", 93_784),
            ("45", 2700),
            ("01:30:00", 5400),
            ("1-12:00:00", 129_600),
            ("100:00:00", 360_000),
            ("90:30", 5430),
            ("1-12", 129_600),
            ("1-12:30", 131_400),
        ] {
            assert_eq!(parse_time(text), Ok(TimeLimit(secs)), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in [
            "",
            "m",
            "30x",
            "3m2h",
            "1h1h",
            "30m5",
            "1:60:00",
            "0",
            "0m",
            "-5m",
            "1.5h",
            "1:60",
            "1-24:00:00",
            "1-2:3:4:5",
            "1:2:3:4",
            ":30",
            "1-",
            "-1",
            // Too large to hold: refused, never wrapped.
            "144115188075855872-01:00:00",
            "99999999999999999999:00:00",
            "5124095576030432:00:00",
            "307445734561825861",
            "213503982334602d",
        ] {
            assert!(parse_time(text).is_err(), "{text} was accepted");
        }
        assert!(parse_time("0s").unwrap_err().contains("above zero"));
    }

    #[test]
    fn slurm_form() {
        assert_eq!(TimeLimit(1800).slurm(), "00:30:00");
        assert_eq!(TimeLimit(93_784).slurm(), "1-02:03:04");
    }
}
