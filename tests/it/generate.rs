//! A generator of syntactically valid policy files and of mutants of them, driven by a
//! seed so that a failing case is reproducible from its printed seed.

/// A small deterministic RNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const NAMES: &[&str] = &[
    "a",
    "cost_cap",
    "x1",
    "step.cost",
    "step.tokens",
    "run.agent",
    "std.llm.cost",
    "count",
    "to",
    "all",
    "step",
];
const LITERALS: &[&str] = &[
    "0",
    "1_000",
    "0.5",
    "$5",
    "$0.0125",
    "5.00 usd",
    "200_000 tokens",
    "250ms",
    "30s",
    "5m",
    "1h",
    "1d",
    "80%",
    "\"gpt-4o\"",
    "\"a\\\"b\\u{20AC}\"",
    "true",
    "false",
];

pub fn expr(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return if rng.chance(50) {
            rng.pick(LITERALS).into()
        } else {
            rng.pick(NAMES).into()
        };
    }
    let d = depth - 1;
    match rng.below(11) {
        0 => rng.pick(LITERALS).into(),
        1 => rng.pick(NAMES).into(),
        2 => format!(
            "({}) {} ({})",
            expr(rng, d),
            rng.pick(&["+", "-", "*", "/"]),
            expr(rng, d)
        ),
        3 => format!(
            "{} {} {}",
            arith(rng, d),
            rng.pick(&["==", "!=", "<", "<=", ">", ">="]),
            arith(rng, d)
        ),
        4 => format!(
            "({}) {} ({})",
            expr(rng, d),
            rng.pick(&["and", "or"]),
            expr(rng, d)
        ),
        5 => format!("not {}", expr(rng, d)),
        6 => format!("-{}", unary(rng, d)),
        7 => format!("({})", expr(rng, d)),
        8 => format!("{} in [{}]", arith(rng, d), list(rng, d)),
        9 => "run.labels[\"env\"]".into(),
        _ => aggregate(rng, d),
    }
}

/// An expression that can stand on either side of a comparison (no comparison inside).
fn arith(rng: &mut Rng, depth: usize) -> String {
    match rng.below(3) {
        0 => unary(rng, depth),
        1 => format!("{} + {}", unary(rng, depth), unary(rng, depth)),
        _ => format!("({})", expr(rng, depth)),
    }
}

fn unary(rng: &mut Rng, depth: usize) -> String {
    if depth > 0 && rng.chance(30) {
        return aggregate(rng, depth - 1);
    }
    if rng.chance(50) {
        rng.pick(LITERALS).into()
    } else {
        rng.pick(NAMES).into()
    }
}

fn list(rng: &mut Rng, depth: usize) -> String {
    let n = rng.below(3);
    (0..n)
        .map(|_| expr(rng, depth))
        .collect::<Vec<_>>()
        .join(", ")
}

fn aggregate(rng: &mut Rng, depth: usize) -> String {
    let filter = |rng: &mut Rng| {
        if rng.chance(40) {
            format!(" where {}", expr(rng, depth))
        } else {
            String::new()
        }
    };
    match rng.below(4) {
        0 => {
            if rng.chance(50) {
                "count()".into()
            } else {
                format!("count({})", expr(rng, depth))
            }
        }
        1 => format!(
            "rate({}{}, {})",
            expr(rng, depth),
            filter(rng),
            rng.pick(&["1m", "30s", "1h"])
        ),
        _ => {
            let f = rng.pick(&["sum", "max", "min", "last", "avg"]);
            format!("{f}({}{})", expr(rng, depth), filter(rng))
        }
    }
}

fn scope(rng: &mut Rng, depth: usize) -> String {
    let sel = |rng: &mut Rng| {
        rng.pick(&[
            "tenant",
            "agent",
            "api_key",
            "human_actor",
            "labels[\"plan\"]",
        ])
        .to_string()
    };
    if depth == 0 {
        return match rng.below(3) {
            0 => "all".into(),
            1 => format!("{} {} \"v\"", sel(rng), rng.pick(&["==", "!="])),
            _ => format!("{} in [\"a\", \"b\"]", sel(rng)),
        };
    }
    match rng.below(4) {
        0 => format!("{} and {}", scope(rng, depth - 1), scope(rng, depth - 1)),
        1 => format!("{} or {}", scope(rng, depth - 1), scope(rng, depth - 1)),
        2 => format!("not {}", scope(rng, depth - 1)),
        _ => format!("({})", scope(rng, depth - 1)),
    }
}

fn actions(rng: &mut Rng, enforce: bool) -> String {
    let mut parts = Vec::new();
    if enforce && rng.chance(70) {
        parts.push(rng.pick(&["pause", "stop", "kill"]).to_string());
    }
    if parts.is_empty() || rng.chance(50) {
        parts.push(format!(
            "alert({})",
            rng.pick(&["ui", "ops", "ui, ops", "limit"])
        ));
    }
    parts.join(", ")
}

fn clause(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!("version {}", rng.below(10)),
        1 => "description \"a policy\"".into(),
        2 => format!("scope {}", scope(rng, 2)),
        3 => format!("precedence {}", rng.below(200)),
        4 => format!(
            "conflict {}",
            rng.pick(&["most_restrictive", "explicit_priority", "fail_closed"])
        ),
        5 => format!(
            "bind {}",
            rng.pick(&["run_start", "first_token", "each_step"])
        ),
        6 => format!("on_error {}", rng.pick(&["fail_closed", "fail_open"])),
        7 => format!(
            "inspect {{ prompt_logging {} pii_capture deny }}",
            rng.pick(&["allow", "deny"])
        ),
        8 => format!("monitor m{} = {}", rng.below(5), aggregate(rng, 2)),
        9 => {
            let near = if rng.chance(60) {
                format!(
                    "near {} => {} ",
                    rng.pick(&["80%", "87.5%", "50%"]),
                    actions(rng, false)
                )
            } else {
                String::new()
            };
            let breach = if near.is_empty() || rng.chance(70) {
                format!("breach => {}", actions(rng, true))
            } else {
                String::new()
            };
            format!(
                "limit {} to {} {{ {near}{breach} }}",
                rng.pick(&["std.llm.cost", "m1", "slow"]),
                expr(rng, 1)
            )
        }
        10 => format!(
            "alerts {{ max_per_run {} min_interval {} }}",
            rng.below(9),
            rng.pick(&["0s", "30s", "5m"])
        ),
        _ => {
            let rules: Vec<String> = (0..rng.below(3) + 1).map(|_| rule(rng)).collect();
            format!("override {{\n        {}\n    }}", rules.join("\n        "))
        }
    }
}

fn rule(rng: &mut Rng) -> String {
    let who = if rng.chance(50) {
        "role \"sre\""
    } else {
        "actor \"alice@example.com\""
    };
    let kind = match rng.below(3) {
        0 => format!(
            "raise std.llm.cost up to {}",
            rng.pick(&["200%", "$10", "CAP * 2"])
        ),
        1 => "suspend".to_string(),
        _ => "resume".to_string(),
    };
    let ttl = if kind != "resume" && rng.chance(50) {
        " for 1h"
    } else {
        ""
    };
    let reason = if rng.chance(50) {
        " requires reason"
    } else {
        ""
    };
    let approvals = if rng.chance(30) { " approvals 2" } else { "" };
    format!("allow {who} to {kind}{ttl}{reason}{approvals}")
}

fn item(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "import std.llm".into(),
        1 => format!(
            "signal s{}: {}",
            rng.below(9),
            rng.pick(&["count", "tokens", "usd", "duration"])
        ),
        2 => format!("monitor g{} = {}", rng.below(9), expr(rng, 3)),
        3 => format!("const C{} = {}", rng.below(9), expr(rng, 2)),
        4 => format!(
            "channel ch{} = {}",
            rng.below(9),
            rng.pick(&[
                "webhook(url: env(\"U\"), secret: env(\"S\"))",
                "slack(url: \"https://x\")",
                "email(to: [\"a@b.c\", \"d@e.f\"])",
                "email()"
            ])
        ),
        5 => "test \"t\" { step { cost $1 } expect { breach } }".into(),
        _ => {
            let clauses: Vec<String> = (0..rng.below(6) + 1).map(|_| clause(rng)).collect();
            format!(
                "policy p{} {{\n    {}\n}}",
                rng.below(9),
                clauses.join("\n    ")
            )
        }
    }
}

/// A syntactically valid file.
pub fn program(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let items: Vec<String> = (0..rng.below(5) + 1).map(|_| item(&mut rng)).collect();
    let comment = if rng.chance(30) { "// generated\n" } else { "" };
    format!("{comment}{}\n", items.join("\n\n"))
}

const INSERTS: &[&str] = &[
    "{", "}", "(", ")", "[", "]", ",", ":", "=", "=>", "==", "<", "+", "*", ".", "policy", "limit",
    "to", "near", "breach", "$", "5", "%", "\"", "/*", "and", "in", "where", "x", "80%", "1.5h",
];

/// A mutant of `text`: a token-level or character-level edit.
pub fn mutate(text: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (tokens, _) = lever::syntax::lexer::lex(lever::source::FileId(0), text);
    let spans: Vec<std::ops::Range<usize>> = tokens.iter().map(|t| t.span.range()).collect();
    if spans.is_empty() {
        return format!("{text}{}", rng.pick(INSERTS));
    }
    let s = spans[rng.below(spans.len())].clone();
    let (before, tok, after) = (&text[..s.start], &text[s.clone()], &text[s.end..]);
    match rng.below(5) {
        0 => format!("{before}{after}"),
        1 => format!("{before}{tok} {tok}{after}"),
        2 => format!("{before}{} {tok}{after}", rng.pick(INSERTS)),
        3 => format!("{before}{}{after}", rng.pick(INSERTS)),
        _ => {
            // Swap with the next token.
            let i = spans.iter().position(|x| *x == s).unwrap_or(0);
            match spans.get(i + 1) {
                Some(n) => format!("{before}{} {}{}", &text[n.clone()], tok, &text[n.end..]),
                None => format!("{before}{after}"),
            }
        }
    }
}
