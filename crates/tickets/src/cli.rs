//! Values the binaries' flags take: durations and projection choices.

use std::str::FromStr;
use std::time::Duration;

use readmodel::Projection;

/// A duration flag: `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration.is_zero() {
        return Err(format!("`{}` must be a positive duration", text.trim()));
    }
    Ok(duration)
}

/// Like [`parse_duration`], for a flag where zero means "none" (`0ms`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use e.g. 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "`{other}` is not a duration unit: use ms, s or m (e.g. 10s)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!(
            "`{text}` is not a duration: use e.g. 10s, 500ms or 2m"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--projection detail|list|dashboard|all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projections(pub Vec<Projection>);

impl Default for Projections {
    fn default() -> Self {
        Projections(Projection::ALL.to_vec())
    }
}

impl FromStr for Projections {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Projections::default());
        }
        s.parse::<Projection>()
            .map(|p| Projections(vec![p]))
            .map_err(|_| {
                format!("unknown projection `{s}`: expected detail, list, dashboard or all")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
        assert_eq!(parse_duration_or_zero("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("5ms"), Ok(Duration::from_millis(5)));
        assert!(parse_duration_or_zero("-1s").is_err());
    }

    #[test]
    fn projections_one_or_all() {
        assert_eq!("list".parse(), Ok(Projections(vec![Projection::List])));
        assert_eq!("all".parse(), Ok(Projections(Projection::ALL.to_vec())));
        assert!("lists".parse::<Projections>().is_err());
    }
}
