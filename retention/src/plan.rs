//! Retention plans: the grammar, the parsed rules, and the period each rule implies.
//!
//! This module owns the text of a plan (`hourly=24,daily=7`) and what each rule means in
//! numbers. It does not look at snapshots or clocks: the `decide` module applies a plan.

use jiff::SignedDuration;
use std::fmt;
use std::str::FromStr;

/// What a rule list may hold, said in every parse error that is about a rule.
const ACCEPTED: &str = "rules are last=N, within=AGE (AGE: a whole number and one of s, m, h, \
                        d, w) and [K]secondly|minutely|hourly|daily|weekly|monthly|yearly=N";

/// The calendar unit of a bucket rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub(crate) const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    /// The rule word: `hourly`.
    pub fn word(self) -> &'static str {
        match self {
            Unit::Second => "secondly",
            Unit::Minute => "minutely",
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// The unit's nominal length. Months and years take their longest length (31 and 366
    /// days), so a monitoring check built on it never warns early; a day is 24 hours, and
    /// the hour a daylight-saving change adds or takes is well inside a check's margin.
    pub fn nominal(self) -> SignedDuration {
        const DAY: i64 = 24 * 3600;
        SignedDuration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => DAY,
            Unit::Week => 7 * DAY,
            Unit::Month => 31 * DAY,
            Unit::Year => 366 * DAY,
        })
    }

    /// How many of this unit make the next larger one, for the units whose multiples are
    /// aligned inside it (`15minutely` inside the hour); `None` for units aligned to 1970.
    fn within(self) -> Option<u32> {
        match self {
            Unit::Second | Unit::Minute => Some(60),
            Unit::Hour => Some(24),
            _ => None,
        }
    }
}

/// The size of a bucket: `multiple` consecutive calendar `unit`s (`15minutely` = 15 minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BucketSize {
    pub multiple: u32,
    pub unit: Unit,
}

impl BucketSize {
    /// The nominal length of one bucket (see [`Unit::nominal`]).
    pub fn period(self) -> SignedDuration {
        // Cannot overflow: u32::MAX * 366 days is about 2^57 seconds.
        SignedDuration::from_secs(self.unit.nominal().as_secs() * i64::from(self.multiple))
    }
}

impl fmt::Display for BucketSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multiple != 1 {
            write!(f, "{}", self.multiple)?;
        }
        f.write_str(self.unit.word())
    }
}

/// The age limit of a `within` rule, kept as written so it displays as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Age {
    amount: u32,
    unit: char,
}

impl Age {
    /// The age as a duration: `s`, `m`, `h` as usual, `d` = 24 h, `w` = 7 d (fixed lengths:
    /// `within` is about age, not about calendar days).
    pub fn duration(self) -> SignedDuration {
        let secs = match self.unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 24 * 3600,
            _ => 7 * 24 * 3600,
        };
        SignedDuration::from_secs(i64::from(self.amount) * secs)
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit)
    }
}

/// One rule of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `[K]unitly=N`: the oldest snapshot of each of the `keep` newest buckets that hold one.
    Buckets { size: BucketSize, keep: u32 },
    /// `last=N`: the `keep` newest snapshots.
    Last { keep: u32 },
    /// `within=AGE`: every snapshot younger than `age`.
    Within { age: Age },
}

impl Rule {
    /// The rule's name without its value: `15minutely`, `last`, `within`. Two rules with
    /// the same name make a plan ambiguous.
    pub fn name(&self) -> String {
        match self {
            Rule::Buckets { size, .. } => size.to_string(),
            Rule::Last { .. } => "last".to_string(),
            Rule::Within { .. } => "within".to_string(),
        }
    }

    /// How often this rule wants a snapshot: a bucket's nominal length. `last` and
    /// `within` ask for no particular rate.
    pub fn period(&self) -> Option<SignedDuration> {
        match self {
            Rule::Buckets { size, .. } => Some(size.period()),
            Rule::Last { .. } | Rule::Within { .. } => None,
        }
    }

    /// Whether the rule can never keep anything (`daily=0`, `within=0s`).
    pub fn keeps_nothing(&self) -> bool {
        match self {
            Rule::Buckets { keep, .. } | Rule::Last { keep } => *keep == 0,
            Rule::Within { age } => age.amount == 0,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Buckets { size, keep } => write!(f, "{size}={keep}"),
            Rule::Last { keep } => write!(f, "last={keep}"),
            Rule::Within { age } => write!(f, "within={age}"),
        }
    }
}

/// A parsed plan: its rules in the order written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    rules: Vec<Rule>,
}

impl Plan {
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        if text.trim().is_empty() {
            return Err(PlanError::NoRule);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(PlanError::EmptyRule {
                    plan: text.to_string(),
                });
            }
            let rule = parse_rule(part)?;
            if let Some(earlier) = rules.iter().find(|r| r.name() == rule.name()) {
                return Err(PlanError::DuplicateRule {
                    first: earlier.to_string(),
                    second: part.to_string(),
                });
            }
            rules.push(rule);
        }
        if rules.iter().all(Rule::keeps_nothing) {
            return Err(PlanError::KeepsNothing {
                plan: text.to_string(),
            });
        }
        Ok(Plan { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The age a dataset's newest snapshot should not much exceed: the shortest period
    /// among the rules that keep something (`hourly=24,daily=7` -> 1 h). A monitoring check
    /// warns at 1.5 times this and goes critical at 3 times. `None` when only `last` and
    /// `within` rules keep anything: they ask for no rate.
    pub fn expected_period(&self) -> Option<SignedDuration> {
        self.rules
            .iter()
            .filter(|r| !r.keeps_nothing())
            .filter_map(Rule::period)
            .min()
    }
}

impl FromStr for Plan {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Plan, PlanError> {
        Plan::parse(s)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

fn parse_rule(part: &str) -> Result<Rule, PlanError> {
    let unknown = || PlanError::UnknownRule {
        rule: part.to_string(),
    };
    let (name, value) = part.split_once('=').ok_or_else(unknown)?;
    let (name, value) = (name.trim(), value.trim());
    let keep = || parse_count(value).ok_or_else(|| PlanError::BadNumber { rule: part.into() });
    match name {
        "last" => return Ok(Rule::Last { keep: keep()? }),
        "within" => {
            let age = parse_age(value).ok_or_else(|| PlanError::BadAge { rule: part.into() })?;
            return Ok(Rule::Within { age });
        }
        _ => {}
    }
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    let (multiple, word) = name.split_at(digits);
    let unit = Unit::ALL
        .into_iter()
        .find(|u| u.word() == word)
        .ok_or_else(unknown)?;
    let multiple = if multiple.is_empty() {
        1
    } else {
        parse_multiple(multiple, unit).map_err(|why| PlanError::BadMultiple {
            rule: part.to_string(),
            why,
        })?
    };
    Ok(Rule::Buckets {
        size: BucketSize { multiple, unit },
        keep: keep()?,
    })
}

/// A count: ASCII digits only (`u32::from_str` would take `+5`).
fn parse_count(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_age(text: &str) -> Option<Age> {
    let unit = text.chars().last()?;
    if !matches!(unit, 's' | 'm' | 'h' | 'd' | 'w') {
        return None;
    }
    let amount = parse_count(&text[..text.len() - 1])?;
    Some(Age { amount, unit })
}

/// A multiple of `unit`. Seconds, minutes and hours are aligned inside the next larger
/// unit, so their multiples must divide it evenly (else the last bucket of each hour or day
/// would be short); longer units are counted from 1970 and take any multiple.
fn parse_multiple(text: &str, unit: Unit) -> Result<u32, String> {
    let multiple = parse_count(text)
        .filter(|&m| m > 0)
        .ok_or_else(|| "the multiple must be a whole number from 1".to_string())?;
    match unit.within() {
        Some(whole) if multiple >= whole || whole % multiple != 0 => {
            let divisors: Vec<String> = (1..whole)
                .filter(|d| whole % d == 0)
                .map(|d| d.to_string())
                .collect();
            Err(format!(
                "a multiple of {} must divide {whole}: {}",
                unit.word(),
                divisors.join(", ")
            ))
        }
        _ => Ok(multiple),
    }
}

/// Why a plan was refused. Every message names the bad part and says what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The plan text holds no rule at all.
    NoRule,
    /// Two commas in a row, or a comma at either end.
    EmptyRule {
        plan: String,
    },
    UnknownRule {
        rule: String,
    },
    DuplicateRule {
        first: String,
        second: String,
    },
    BadNumber {
        rule: String,
    },
    BadMultiple {
        rule: String,
        why: String,
    },
    BadAge {
        rule: String,
    },
    /// Every rule keeps 0: the plan would destroy every snapshot but the newest.
    KeepsNothing {
        plan: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoRule => write!(f, "retention plan has no rule; {ACCEPTED}"),
            PlanError::EmptyRule { plan } => write!(
                f,
                "retention plan {plan:?} has an empty rule (a comma too many); {ACCEPTED}"
            ),
            PlanError::UnknownRule { rule } => {
                write!(f, "unknown retention rule {rule:?}; {ACCEPTED}")
            }
            PlanError::DuplicateRule { first, second } => write!(
                f,
                "retention rule {second:?} repeats {first:?}: each rule may appear once"
            ),
            PlanError::BadNumber { rule } => write!(
                f,
                "bad number in retention rule {rule:?}: N is a whole number from 0 to {}",
                u32::MAX
            ),
            PlanError::BadMultiple { rule, why } => {
                write!(f, "bad multiple in retention rule {rule:?}: {why}")
            }
            PlanError::BadAge { rule } => write!(
                f,
                "bad age in retention rule {rule:?}: AGE is a whole number and one of s \
                 (seconds), m (minutes), h (hours), d (24 h), w (7 d), e.g. 90s, 36h, 7d, 2w"
            ),
            PlanError::KeepsNothing { plan } => write!(
                f,
                "retention plan {plan:?} is an empty plan: every rule keeps 0, so it would \
                 destroy every snapshot but the newest"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Plan::parse(text).unwrap_err().to_string()
    }

    /// Each of `texts` is refused with a message that starts with `start` and says `accepted`.
    fn refused(texts: &[&str], start: &str, accepted: &str) {
        for text in texts {
            let e = err(text);
            assert!(e.starts_with(start), "{text}: {e}");
            assert!(e.contains(&format!("{text:?}")), "{text}: {e}");
            assert!(e.contains(accepted), "{text}: {e}");
        }
    }

    fn secs(d: Option<SignedDuration>) -> Option<i64> {
        d.map(|d| d.as_secs())
    }

    #[test]
    fn full_plan_parses_and_displays_as_written() {
        let text = "within=1h,minutely=60,hourly=24,daily=30,weekly=8,monthly=12,yearly=5";
        assert_eq!(Plan::parse(text).unwrap().to_string(), text);
    }

    #[test]
    fn multiples_parse_and_one_is_the_plain_unit() {
        let plan = Plan::parse("15minutely=8, 2hourly = 12,1daily=3,3monthly=4").unwrap();
        assert_eq!(
            plan.to_string(),
            "15minutely=8,2hourly=12,daily=3,3monthly=4"
        );
        assert_eq!(
            plan.rules()[0],
            Rule::Buckets {
                size: BucketSize {
                    multiple: 15,
                    unit: Unit::Minute
                },
                keep: 8
            }
        );
    }

    #[test]
    fn a_rule_may_keep_zero_if_another_keeps_something() {
        let plan = Plan::parse("hourly=0,daily=7,last=0").unwrap();
        assert!(plan.rules()[0].keeps_nothing());
        assert!(!plan.rules()[1].keeps_nothing());
    }

    #[test]
    fn ages() {
        for (text, want) in [
            ("90s", 90),
            ("15m", 900),
            ("36h", 36 * 3600),
            ("7d", 7 * 86400),
            ("2w", 14 * 86400),
        ] {
            let plan = Plan::parse(&format!("within={text}")).unwrap();
            let Rule::Within { age } = plan.rules()[0] else {
                panic!("{text}: not a within rule")
            };
            assert_eq!(age.duration().as_secs(), want, "{text}");
            assert_eq!(age.to_string(), text);
        }
    }

    #[test]
    fn expected_period_is_the_shortest_rule_that_keeps_something() {
        for (text, want) in [
            ("hourly=24,daily=7", Some(3600)),
            ("minutely=0,hourly=24,daily=7", Some(3600)),
            ("daily=7,15minutely=4", Some(900)),
            ("3monthly=4", Some(3 * 31 * 86400)),
            ("yearly=2", Some(366 * 86400)),
            ("last=5,within=1d", None),
        ] {
            assert_eq!(
                secs(Plan::parse(text).unwrap().expected_period()),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn period_of_each_rule() {
        let plan = Plan::parse("2weekly=3,secondly=10,last=3,within=1h").unwrap();
        let periods: Vec<Option<i64>> = plan.rules().iter().map(|r| secs(r.period())).collect();
        assert_eq!(periods, [Some(14 * 86400), Some(1), None, None]);
    }

    #[test]
    fn no_rule() {
        for text in ["", "  "] {
            assert!(
                err(text).contains("has no rule; rules are last=N"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn empty_rule() {
        for text in ["daily=7,,hourly=3", "daily=7,", ",daily=7"] {
            assert!(err(text).contains("has an empty rule"), "{text:?}");
        }
    }

    #[test]
    fn unknown_rules_name_themselves_and_the_accepted_ones() {
        refused(
            &[
                "fortnightly=2",
                "daily",
                "Daily=3",
                "=3",
                "x15minutely=2",
                "keep=3",
            ],
            "unknown retention rule \"",
            "[K]secondly|minutely|hourly|daily|weekly|monthly|yearly=N",
        );
        assert!(err("daily=7, keep=3").starts_with("unknown retention rule \"keep=3\""));
    }

    #[test]
    fn duplicate_rules() {
        for (text, names) in [
            ("daily=7,daily=8", "\"daily=8\" repeats \"daily=7\""),
            ("daily=7,1daily=8", "\"1daily=8\" repeats \"daily=7\""),
            ("last=1,last=2", "\"last=2\" repeats \"last=1\""),
            ("within=1h,within=2h", "\"within=2h\" repeats \"within=1h\""),
        ] {
            assert!(err(text).contains(names), "{text}: {}", err(text));
        }
        Plan::parse("daily=7,2daily=8").unwrap();
    }

    #[test]
    fn bad_numbers() {
        refused(
            &[
                "daily=",
                "daily=x",
                "daily=-1",
                "daily=+5",
                "daily=1.5",
                "last=99999999999",
            ],
            "bad number in retention rule",
            "whole number from 0",
        );
    }

    #[test]
    fn bad_multiples() {
        for (text, why) in [
            ("0hourly=3", "from 1"),
            (
                "7minutely=3",
                "must divide 60: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30",
            ),
            ("60minutely=3", "must divide 60"),
            ("5hourly=3", "must divide 24: 1, 2, 3, 4, 6, 8, 12"),
            ("24hourly=3", "must divide 24"),
        ] {
            let e = err(text);
            assert!(
                e.starts_with("bad multiple in retention rule"),
                "{text}: {e}"
            );
            assert!(e.contains(why), "{text}: {e}");
        }
        Plan::parse("7daily=3,5weekly=2,7monthly=1,3yearly=1").unwrap();
    }

    #[test]
    fn bad_ages() {
        refused(
            &[
                "within=",
                "within=h",
                "within=7",
                "within=7y",
                "within=1h30m",
                "within=-1h",
            ],
            "bad age in retention rule",
            "90s, 36h, 7d, 2w",
        );
    }

    #[test]
    fn a_plan_that_keeps_nothing_is_an_empty_plan() {
        for text in ["daily=0", "hourly=0,last=0,within=0h"] {
            assert!(err(text).contains("is an empty plan"), "{text}");
        }
    }
}
