//! The parser: hand-written recursive descent over the cooked tokens.
//!
//! It follows the grammar appendix of LANGUAGE.md (and `grammar/lever.pest`, which a test
//! holds it to) and never gives up on a file: an error inside a clause skips to the next
//! clause of the policy, an error in an item skips to the next item, so a file with three
//! mistakes reports three diagnostics. Ranges, multiplicity and names are the checker's.

use super::ast::*;
use super::lexer::{Token, TokenKind, TokenValue};
use crate::base::diag::{Code, Diagnostic};
use crate::base::source::{FileId, Span};

/// How deep expressions and scopes may nest (parentheses, `not`, `-`, and operator
/// chains, which build left-deep trees). A resource limit, not grammar: it keeps every
/// recursive stage of the pipeline far from the stack's end on hostile input.
pub const MAX_NESTING: usize = 256;

/// Words reserved everywhere (LANGUAGE §2); every other word is contextual.
pub const RESERVED: &[&str] = &[
    "import",
    "signal",
    "monitor",
    "const",
    "channel",
    "policy",
    "test",
    "extern",
    "let",
    "version",
    "description",
    "scope",
    "precedence",
    "conflict",
    "bind",
    "on_error",
    "inspect",
    "limit",
    "alerts",
    "override",
    "allow",
    "near",
    "breach",
    "true",
    "false",
    "and",
    "or",
    "not",
    "in",
    "where",
];

pub const ITEM_KEYWORDS: &[&str] = &[
    "import", "signal", "monitor", "const", "channel", "policy", "test", "extern", "let",
];

/// Item keywords that never start a clause: seeing one ends a policy whose `}` is missing.
const ITEM_ONLY_KEYWORDS: &[&str] = &[
    "import", "signal", "const", "channel", "policy", "test", "extern", "let",
];

pub const CLAUSE_KEYWORDS: &[&str] = &[
    "version",
    "description",
    "scope",
    "precedence",
    "conflict",
    "bind",
    "on_error",
    "inspect",
    "monitor",
    "limit",
    "alerts",
    "override",
];

pub fn is_reserved(word: &str) -> bool {
    RESERVED.contains(&word)
}

/// Parses one file's tokens. The tree holds every item that parsed; the diagnostics say
/// what did not.
pub fn parse(file: FileId, text: &str, tokens: &[Token]) -> (File, Vec<Diagnostic>) {
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        nesting: 0,
        text,
        file,
        diags: Vec::new(),
    };
    let items = p.file_items();
    (File { file, items }, p.diags)
}

/// An error already reported as a diagnostic; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Current brace depth, counted as `{` and `}` are consumed.
    depth: usize,
    /// Depth of the expression or scope tree being built, bounded by [`MAX_NESTING`].
    nesting: usize,
    text: &'a str,
    file: FileId,
    diags: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    // ----- token access -------------------------------------------------------------

    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.tokens.get(self.pos + n)
    }

    fn kind(&self) -> Option<TokenKind> {
        self.peek().map(|t| t.kind)
    }

    fn text_of(&self, t: &Token) -> &'a str {
        self.text.get(t.span.range()).unwrap_or("")
    }

    /// The current token's text when it is a word.
    fn word(&self) -> Option<&'a str> {
        self.peek()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| self.text_of(t))
    }

    fn at_word(&self, w: &str) -> bool {
        self.word() == Some(w)
    }

    fn at(&self, kind: TokenKind) -> bool {
        self.kind() == Some(kind)
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let t = self.peek()?;
        match t.kind {
            TokenKind::LBrace => self.depth += 1,
            TokenKind::RBrace => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.pos += 1;
        Some(t)
    }

    /// Span of the current token, or an empty span at the end of the file.
    fn here(&self) -> Span {
        match self.peek() {
            Some(t) => t.span,
            None => {
                let end = self.text.len();
                Span::new(self.file, end, end)
            }
        }
    }

    /// Where a syntax error is shown: at the unexpected token, or just after the previous
    /// token when the unexpected one is on a later line (a missing `)` belongs to the line
    /// that lacks it).
    fn error_span(&self) -> Span {
        let here = self.here();
        let Some(prev) = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)) else {
            return here;
        };
        let gap = self
            .text
            .get(prev.span.end as usize..here.start as usize)
            .unwrap_or("");
        if gap.contains('\n') {
            return Span {
                start: prev.span.end,
                end: prev.span.end,
                ..prev.span
            };
        }
        here
    }

    fn prev_span(&self) -> Span {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or_else(|| self.here(), |t| t.span)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of file".to_string(),
            Some(t) if t.kind == TokenKind::Word => format!("`{}`", self.text_of(t)),
            Some(t) => t.kind.describe().to_string(),
        }
    }

    fn error(&mut self, expected: &str) -> Reported {
        let message = format!("expected {expected}, found {}", self.found());
        let span = self.error_span();
        self.diags
            .push(Diagnostic::new(Code::Syntax, span, message));
        Reported
    }

    fn error_help(&mut self, expected: &str, help: &str) -> Reported {
        self.error(expected);
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help.to_string());
        }
        Reported
    }

    fn expect(&mut self, kind: TokenKind) -> PResult<&'a Token> {
        if self.at(kind) {
            return self.bump().ok_or(Reported);
        }
        Err(self.error(kind.describe()))
    }

    fn expect_word(&mut self, w: &str) -> PResult<Span> {
        if self.at_word(w) {
            return Ok(self.bump().map_or_else(|| self.here(), |t| t.span));
        }
        Err(self.error(&format!("`{w}`")))
    }

    /// Takes the word if it is one of `options`.
    fn eat_one_of(&mut self, options: &[&'static str]) -> Option<(&'static str, Span)> {
        let w = self.word()?;
        let hit = options.iter().copied().find(|o| *o == w)?;
        let span = self.bump()?.span;
        Some((hit, span))
    }

    fn expect_one_of(&mut self, options: &[&'static str]) -> PResult<(&'static str, Span)> {
        if let Some(hit) = self.eat_one_of(options) {
            return Ok(hit);
        }
        let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
        Err(self.error(&list.join(" or ")))
    }

    // ----- terminals ----------------------------------------------------------------

    /// An identifier: a word that is not reserved.
    fn ident(&mut self) -> PResult<Name> {
        match self.word() {
            Some(w) if !is_reserved(w) => self.any_word(),
            Some(w) => {
                let w = w.to_string();
                Err(self.error_help(
                    "a name",
                    &format!("`{w}` is a reserved word; choose another name"),
                ))
            }
            None => Err(self.error("a name")),
        }
    }

    /// Any word, reserved or not (after `.`, channel argument names, `alert(...)`).
    fn any_word(&mut self) -> PResult<Name> {
        let t = self.expect(TokenKind::Word)?;
        Ok(Name {
            text: self.text_of(t).to_string(),
            span: t.span,
        })
    }

    fn qname(&mut self) -> PResult<QName> {
        let first = self.ident()?;
        let mut parts = vec![first];
        while self.at(TokenKind::Dot) {
            self.bump();
            parts.push(self.any_word()?);
        }
        let span = parts
            .first()
            .map(|f| f.span)
            .unwrap_or_else(|| self.here())
            .to(self.prev_span());
        Ok(QName { parts, span })
    }

    fn string(&mut self) -> PResult<StrLit> {
        let t = self.expect(TokenKind::Str)?;
        let value = match &t.value {
            TokenValue::Str(s) => s.clone(),
            _ => String::new(),
        };
        Ok(StrLit {
            value,
            span: t.span,
        })
    }

    fn int(&mut self) -> PResult<IntLit> {
        let t = self.expect(TokenKind::Int)?;
        let digits: String = self.text_of(t).chars().filter(|c| *c != '_').collect();
        Ok(IntLit {
            value: digits.parse().ok(),
            span: t.span,
        })
    }

    fn quantity(&mut self, kind: TokenKind) -> PResult<QuantityLit> {
        let t = self.expect(kind)?;
        let value = match t.value {
            TokenValue::Number(v) => v,
            _ => None,
        };
        Ok(QuantityLit {
            value,
            span: t.span,
        })
    }

    // ----- nesting ------------------------------------------------------------------

    /// One level deeper into the tree being built; an error past [`MAX_NESTING`].
    fn deeper(&mut self) -> PResult<()> {
        if self.nesting >= MAX_NESTING {
            let d = Diagnostic::new(
                Code::Syntax,
                self.here(),
                format!("nested more than {MAX_NESTING} levels deep"),
            )
            .with_help("split the expression into `const`s or monitors");
            self.diags.push(d);
            return Err(Reported);
        }
        self.nesting += 1;
        Ok(())
    }

    /// Runs `f` one level deeper, restoring the level afterwards.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.deeper()?;
        let result = f(self);
        self.nesting = self.nesting.saturating_sub(1);
        result
    }

    // ----- recovery -----------------------------------------------------------------

    /// Skips to the next item keyword at the top level.
    fn recover_item(&mut self) {
        self.nesting = 0;
        while let Some(t) = self.peek() {
            if t.kind == TokenKind::Word {
                let w = self.text_of(t);
                if ITEM_ONLY_KEYWORDS.contains(&w)
                    || (self.depth == 0 && ITEM_KEYWORDS.contains(&w))
                {
                    self.depth = 0;
                    return;
                }
            }
            self.bump();
        }
    }

    /// Skips to the next clause of the policy whose body is at `depth`, or its `}`.
    fn recover_clause(&mut self, depth: usize) {
        self.nesting = 0;
        while let Some(t) = self.peek() {
            if self.depth == depth {
                if t.kind == TokenKind::RBrace {
                    return;
                }
                if t.kind == TokenKind::Word && CLAUSE_KEYWORDS.contains(&self.text_of(t)) {
                    return;
                }
            }
            if t.kind == TokenKind::Word && ITEM_ONLY_KEYWORDS.contains(&self.text_of(t)) {
                return;
            }
            if self.depth < depth {
                return;
            }
            self.bump();
        }
    }

    // ----- items --------------------------------------------------------------------

    fn file_items(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while self.peek().is_some() {
            let start = self.pos;
            match self.item() {
                Ok(item) => items.push(item),
                Err(Reported) => {
                    if self.pos == start {
                        self.bump();
                    }
                    self.recover_item();
                }
            }
        }
        items
    }

    fn item(&mut self) -> PResult<Item> {
        let start = self.here();
        let Some(w) = self.word() else {
            return Err(self.error(
                "an item (`import`, `signal`, `monitor`, `const`, `channel`, `policy`, `test`)",
            ));
        };
        let kind = match w {
            "import" => {
                self.bump();
                ItemKind::Import(self.qname()?)
            }
            "signal" => {
                self.bump();
                let name = self.ident()?;
                self.expect(TokenKind::Colon)?;
                ItemKind::Signal {
                    name,
                    unit: self.unit()?,
                }
            }
            "monitor" => ItemKind::Monitor(self.monitor()?),
            "const" => {
                self.bump();
                let name = self.ident()?;
                self.expect(TokenKind::Assign)?;
                ItemKind::Const {
                    name,
                    value: self.expr()?,
                }
            }
            "channel" => ItemKind::Channel(self.channel()?),
            "policy" => ItemKind::Policy(self.policy()?),
            "test" => self.test()?,
            "extern" => {
                self.bump();
                let name = self.qname()?;
                self.expect(TokenKind::Colon)?;
                ItemKind::Extern {
                    name,
                    unit: self.unit()?,
                }
            }
            "let" => {
                self.bump();
                let name = self.qname()?;
                self.expect(TokenKind::Assign)?;
                ItemKind::Let {
                    name,
                    value: self.expr()?,
                }
            }
            _ => {
                return Err(self.error(
                    "an item (`import`, `signal`, `monitor`, `const`, `channel`, `policy`, `test`)",
                ));
            }
        };
        Ok(Item {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    fn unit(&mut self) -> PResult<UnitName> {
        const UNITS: &[&str] = &[
            "count",
            "tokens",
            "usd",
            "duration",
            "bool",
            "string",
            "timestamp",
            "map",
        ];
        let (word, span) = self.expect_one_of(UNITS)?;
        let unit = Unit::from_word(word).unwrap_or(Unit::Count);
        Ok(UnitName { unit, span })
    }

    fn monitor(&mut self) -> PResult<MonitorDecl> {
        let start = self.expect_word("monitor")?;
        let name = self.ident()?;
        self.expect(TokenKind::Assign)?;
        let expr = self.expr()?;
        Ok(MonitorDecl {
            name,
            expr,
            span: start.to(self.prev_span()),
        })
    }

    fn channel(&mut self) -> PResult<ChannelDecl> {
        self.expect_word("channel")?;
        let name = self.ident()?;
        self.expect(TokenKind::Assign)?;
        let (kind, _) = self.expect_one_of(&["webhook", "slack", "email"])?;
        let kind = match kind {
            "webhook" => ChannelKind::Webhook,
            "slack" => ChannelKind::Slack,
            _ => ChannelKind::Email,
        };
        self.expect(TokenKind::LParen)?;
        let mut args = Vec::new();
        if !self.at(TokenKind::RParen) {
            args.push(self.channel_arg()?);
            while self.at(TokenKind::Comma) {
                self.bump();
                args.push(self.channel_arg()?);
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(ChannelDecl { name, kind, args })
    }

    fn channel_arg(&mut self) -> PResult<ChannelArg> {
        let name = self.any_word()?;
        self.expect(TokenKind::Colon)?;
        let value = if self.at_word("env")
            && self.peek_at(1).is_some_and(|t| t.kind == TokenKind::LParen)
        {
            self.bump();
            self.bump();
            let var = self.string()?;
            self.expect(TokenKind::RParen)?;
            ArgValue::Env(var)
        } else if self.at(TokenKind::LBracket) {
            self.bump();
            let mut list = Vec::new();
            if !self.at(TokenKind::RBracket) {
                list.push(self.string()?);
                while self.at(TokenKind::Comma) {
                    self.bump();
                    list.push(self.string()?);
                }
            }
            self.expect(TokenKind::RBracket)?;
            ArgValue::List(list)
        } else {
            ArgValue::Expr(self.expr()?)
        };
        Ok(ChannelArg {
            span: name.span.to(self.prev_span()),
            name,
            value,
        })
    }

    fn test(&mut self) -> PResult<ItemKind> {
        self.expect_word("test")?;
        let name = self.string()?;
        let open = self.expect(TokenKind::LBrace)?.span;
        let depth = self.depth;
        while self.depth >= depth {
            if self.peek().is_none() {
                return Err(self.error("`}` closing the test"));
            }
            self.bump();
        }
        Ok(ItemKind::Test {
            name,
            body: open.to(self.prev_span()),
        })
    }

    // ----- policies and clauses -----------------------------------------------------

    fn policy(&mut self) -> PResult<PolicyDecl> {
        self.expect_word("policy")?;
        let name = self.ident()?;
        self.expect(TokenKind::LBrace)?;
        let depth = self.depth;
        let mut clauses = Vec::new();
        let mut broken = Vec::new();
        loop {
            match self.peek() {
                Some(t) if t.kind == TokenKind::RBrace => {
                    self.bump();
                    break;
                }
                None => return Err(self.error("`}` closing the policy")),
                Some(t)
                    if t.kind == TokenKind::Word
                        && ITEM_ONLY_KEYWORDS.contains(&self.text_of(t)) =>
                {
                    return Err(self.error("a clause or `}` closing the policy"));
                }
                Some(_) => {}
            }
            let start = self.pos;
            match self.clause() {
                Ok(c) => clauses.push(c),
                Err(Reported) => {
                    if let Some(t) = self.tokens.get(start) {
                        broken.push(self.text_of(t).to_string());
                    }
                    if self.pos == start {
                        self.bump();
                    }
                    self.recover_clause(depth);
                }
            }
        }
        Ok(PolicyDecl {
            name,
            clauses,
            broken,
        })
    }

    fn clause(&mut self) -> PResult<Clause> {
        let start = self.here();
        let Some(w) = self.word() else {
            return Err(self.error("a clause (`version`, `scope`, `limit`, ...)"));
        };
        let kind = match w {
            "version" => {
                self.bump();
                ClauseKind::Version(self.int()?)
            }
            "description" => {
                self.bump();
                ClauseKind::Description(self.string()?)
            }
            "scope" => {
                self.bump();
                ClauseKind::Scope(self.scope()?)
            }
            "precedence" => {
                self.bump();
                ClauseKind::Precedence(self.int()?)
            }
            "conflict" => {
                self.bump();
                let (s, _) =
                    self.expect_one_of(&["most_restrictive", "explicit_priority", "fail_closed"])?;
                ClauseKind::Conflict(match s {
                    "most_restrictive" => Conflict::MostRestrictive,
                    "explicit_priority" => Conflict::ExplicitPriority,
                    _ => Conflict::FailClosed,
                })
            }
            "bind" => {
                self.bump();
                let (s, _) = self.expect_one_of(&["run_start", "first_token", "each_step"])?;
                ClauseKind::Bind(match s {
                    "run_start" => Bind::RunStart,
                    "first_token" => Bind::FirstToken,
                    _ => Bind::EachStep,
                })
            }
            "on_error" => {
                self.bump();
                let (s, _) = self.expect_one_of(&["fail_closed", "fail_open"])?;
                ClauseKind::OnError(if s == "fail_open" {
                    OnError::FailOpen
                } else {
                    OnError::FailClosed
                })
            }
            "inspect" => ClauseKind::Inspect(self.inspect()?),
            "monitor" => ClauseKind::Monitor(self.monitor()?),
            "limit" => ClauseKind::Limit(self.limit()?),
            "alerts" => ClauseKind::Alerts(self.alerts()?),
            "override" => ClauseKind::Override(self.override_rules()?),
            _ => return Err(self.error("a clause (`version`, `scope`, `limit`, ...)")),
        };
        Ok(Clause {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    fn inspect(&mut self) -> PResult<Vec<InspectSetting>> {
        self.expect_word("inspect")?;
        self.expect(TokenKind::LBrace)?;
        let mut settings = Vec::new();
        while !self.at(TokenKind::RBrace) {
            let (key, key_span) = self.expect_one_of(&["prompt_logging", "pii_capture"])?;
            let (value, value_span) = self.expect_one_of(&["allow", "deny"])?;
            settings.push(InspectSetting {
                key: if key == "prompt_logging" {
                    InspectKey::PromptLogging
                } else {
                    InspectKey::PiiCapture
                },
                allow: value == "allow",
                span: key_span.to(value_span),
            });
        }
        self.expect(TokenKind::RBrace)?;
        Ok(settings)
    }

    fn limit(&mut self) -> PResult<LimitDecl> {
        self.expect_word("limit")?;
        let monitor = self.qname()?;
        self.expect_word("to")?;
        let value = self.expr()?;
        self.expect(TokenKind::LBrace)?;
        let mut near = None;
        if self.at_word("near") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let percent = self.quantity(TokenKind::Percent)?;
            self.expect(TokenKind::Arrow)?;
            let actions = self.actions()?;
            near = Some(NearClause {
                percent,
                actions,
                span: start.to(self.prev_span()),
            });
        }
        let mut breach = None;
        if self.at_word("breach") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            self.expect(TokenKind::Arrow)?;
            let actions = self.actions()?;
            breach = Some(BreachClause {
                actions,
                span: start.to(self.prev_span()),
            });
        }
        if !self.at(TokenKind::RBrace) {
            let expected = match (&near, &breach) {
                (None, None) => "`near`, `breach` or `}`",
                (Some(_), None) => "`breach` or `}`",
                _ => "`}`",
            };
            return Err(self.error_help(
                expected,
                "a limit takes `near P% => ...` then `breach => ...`, in that order",
            ));
        }
        self.expect(TokenKind::RBrace)?;
        Ok(LimitDecl {
            monitor,
            value,
            near,
            breach,
        })
    }

    fn actions(&mut self) -> PResult<Vec<Action>> {
        let mut actions = vec![self.action()?];
        while self.at(TokenKind::Comma) {
            self.bump();
            actions.push(self.action()?);
        }
        Ok(actions)
    }

    fn action(&mut self) -> PResult<Action> {
        let (word, span) = self.expect_one_of(&["pause", "stop", "kill", "alert"])?;
        let kind = match word {
            "pause" => ActionKind::Pause,
            "stop" => ActionKind::Stop,
            "kill" => ActionKind::Kill,
            _ => {
                self.expect(TokenKind::LParen)?;
                let mut channels = vec![self.any_word()?];
                while self.at(TokenKind::Comma) {
                    self.bump();
                    channels.push(self.any_word()?);
                }
                self.expect(TokenKind::RParen)?;
                ActionKind::Alert(channels)
            }
        };
        Ok(Action {
            kind,
            span: span.to(self.prev_span()),
        })
    }

    fn alerts(&mut self) -> PResult<Vec<(AlertSetting, Span)>> {
        self.expect_word("alerts")?;
        self.expect(TokenKind::LBrace)?;
        let mut settings = Vec::new();
        while !self.at(TokenKind::RBrace) {
            let (key, span) = self.expect_one_of(&["max_per_run", "min_interval"])?;
            let setting = if key == "max_per_run" {
                AlertSetting::MaxPerRun(self.int()?)
            } else {
                AlertSetting::MinInterval(self.quantity(TokenKind::Duration)?)
            };
            settings.push((setting, span.to(self.prev_span())));
        }
        self.expect(TokenKind::RBrace)?;
        Ok(settings)
    }

    fn override_rules(&mut self) -> PResult<Vec<Rule>> {
        self.expect_word("override")?;
        self.expect(TokenKind::LBrace)?;
        let mut rules = Vec::new();
        while !self.at(TokenKind::RBrace) {
            rules.push(self.rule()?);
        }
        self.expect(TokenKind::RBrace)?;
        Ok(rules)
    }

    fn rule(&mut self) -> PResult<Rule> {
        let start = self.expect_word("allow")?;
        let (who, _) = self.expect_one_of(&["role", "actor"])?;
        let name = self.string()?;
        let grantee = if who == "role" {
            Grantee::Role(name)
        } else {
            Grantee::Actor(name)
        };
        self.expect_word("to")?;
        let (kind, _) = self.expect_one_of(&["raise", "suspend", "resume"])?;
        let kind = match kind {
            "raise" => {
                let limit = self.qname()?;
                self.expect_word("up")?;
                self.expect_word("to")?;
                let ceiling = if self.at(TokenKind::Percent) {
                    Ceiling::Percent(self.quantity(TokenKind::Percent)?)
                } else {
                    Ceiling::Value(self.expr()?)
                };
                RuleKind::Raise { limit, ceiling }
            }
            "suspend" => RuleKind::Suspend,
            _ => RuleKind::Resume,
        };
        let mut ttl = None;
        if self.at_word("for") {
            self.bump();
            ttl = Some(self.quantity(TokenKind::Duration)?);
        }
        let mut requires_reason = false;
        if self.at_word("requires") {
            self.bump();
            self.expect_word("reason")?;
            requires_reason = true;
        }
        let mut approvals = None;
        if self.at_word("approvals") {
            self.bump();
            approvals = Some(self.int()?);
        }
        Ok(Rule {
            grantee,
            kind,
            ttl,
            requires_reason,
            approvals,
            span: start.to(self.prev_span()),
        })
    }

    // ----- scopes -------------------------------------------------------------------

    fn scope(&mut self) -> PResult<Scope> {
        self.nested(Self::scope_or)
    }

    fn scope_or(&mut self) -> PResult<Scope> {
        let saved = self.nesting;
        let mut left = self.scope_and()?;
        while self.at_word("or") {
            self.deeper()?;
            self.bump();
            let right = self.scope_and()?;
            let span = left.span.to(right.span);
            left = Scope {
                kind: ScopeKind::Or(Box::new(left), Box::new(right)),
                span,
            };
        }
        self.nesting = saved;
        Ok(left)
    }

    fn scope_and(&mut self) -> PResult<Scope> {
        let saved = self.nesting;
        let mut left = self.scope_not()?;
        while self.at_word("and") {
            self.deeper()?;
            self.bump();
            let right = self.scope_not()?;
            let span = left.span.to(right.span);
            left = Scope {
                kind: ScopeKind::And(Box::new(left), Box::new(right)),
                span,
            };
        }
        self.nesting = saved;
        Ok(left)
    }

    fn scope_not(&mut self) -> PResult<Scope> {
        if self.at_word("not") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::scope_not)?;
            let span = start.to(inner.span);
            return Ok(Scope {
                kind: ScopeKind::Not(Box::new(inner)),
                span,
            });
        }
        self.scope_atom()
    }

    fn scope_atom(&mut self) -> PResult<Scope> {
        let start = self.here();
        if self.at_word("all") {
            self.bump();
            return Ok(Scope {
                kind: ScopeKind::All,
                span: start,
            });
        }
        if self.at(TokenKind::LParen) {
            self.bump();
            let inner = self.scope()?;
            self.expect(TokenKind::RParen)?;
            return Ok(Scope {
                kind: inner.kind,
                span: start.to(self.prev_span()),
            });
        }
        let selector = self.selector()?;
        let kind = if self.at(TokenKind::EqEq) || self.at(TokenKind::NotEq) {
            let negated = self.at(TokenKind::NotEq);
            self.bump();
            ScopeKind::Eq {
                selector,
                negated,
                value: self.string()?,
            }
        } else if self.at_word("in") {
            self.bump();
            self.expect(TokenKind::LBracket)?;
            let mut values = vec![self.string()?];
            while self.at(TokenKind::Comma) {
                self.bump();
                values.push(self.string()?);
            }
            self.expect(TokenKind::RBracket)?;
            ScopeKind::In { selector, values }
        } else {
            return Err(self.error("`==`, `!=` or `in`"));
        };
        Ok(Scope {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    fn selector(&mut self) -> PResult<Selector> {
        let (word, _) = self
            .eat_one_of(&["tenant", "agent", "api_key", "human_actor", "labels"])
            .ok_or_else(|| {
                self.error_help(
                    "`all`, `tenant`, `agent`, `api_key`, `human_actor` or `labels[\"key\"]`",
                    "a scope compares run attributes: `scope agent == \"support-bot\"`",
                )
            })?;
        Ok(match word {
            "tenant" => Selector::Tenant,
            "agent" => Selector::Agent,
            "api_key" => Selector::ApiKey,
            "human_actor" => Selector::HumanActor,
            _ => {
                self.expect(TokenKind::LBracket)?;
                let key = self.string()?;
                self.expect(TokenKind::RBracket)?;
                Selector::Label(key.value)
            }
        })
    }

    // ----- expressions --------------------------------------------------------------

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.binary_chain(0))
    }

    /// `or` (level 0), `and` (1), `not` (2), then comparisons.
    fn binary_chain(&mut self, level: u8) -> PResult<Expr> {
        let (word, op) = match level {
            0 => ("or", BinOp::Or),
            1 => ("and", BinOp::And),
            _ => return self.not_expr(),
        };
        let saved = self.nesting;
        let mut left = self.binary_chain(level + 1)?;
        while self.at_word(word) {
            self.deeper()?;
            self.bump();
            let right = self.binary_chain(level + 1)?;
            left = binary(op, left, right);
        }
        self.nesting = saved;
        Ok(left)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.at_word("not") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::not_expr)?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison_op(&self) -> Option<BinOp> {
        Some(match self.kind()? {
            TokenKind::EqEq => BinOp::Eq,
            TokenKind::NotEq => BinOp::Ne,
            TokenKind::Lt => BinOp::Lt,
            TokenKind::Le => BinOp::Le,
            TokenKind::Gt => BinOp::Gt,
            TokenKind::Ge => BinOp::Ge,
            _ => return None,
        })
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let left = self.additive()?;
        let result = if let Some(op) = self.comparison_op() {
            self.bump();
            let right = self.additive()?;
            binary(op, left, right)
        } else if self.at_word("in") {
            self.bump();
            self.expect(TokenKind::LBracket)?;
            let mut list = Vec::new();
            if !self.at(TokenKind::RBracket) {
                list.push(self.expr()?);
                while self.at(TokenKind::Comma) {
                    self.bump();
                    list.push(self.expr()?);
                }
            }
            self.expect(TokenKind::RBracket)?;
            let span = left.span.to(self.prev_span());
            Expr {
                kind: ExprKind::In(Box::new(left), list),
                span,
            }
        } else {
            return Ok(left);
        };
        if self.comparison_op().is_some() || self.at_word("in") {
            return Err(self.error_help(
                "the end of the comparison",
                "comparisons do not chain; combine them with `and`",
            ));
        }
        Ok(result)
    }

    fn additive(&mut self) -> PResult<Expr> {
        let saved = self.nesting;
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.kind() {
                Some(TokenKind::Plus) => BinOp::Add,
                Some(TokenKind::Minus) => BinOp::Sub,
                _ => {
                    self.nesting = saved;
                    return Ok(left);
                }
            };
            self.deeper()?;
            self.bump();
            let right = self.multiplicative()?;
            left = binary(op, left, right);
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let saved = self.nesting;
        let mut left = self.unary()?;
        loop {
            let op = match self.kind() {
                Some(TokenKind::Star) => BinOp::Mul,
                Some(TokenKind::Slash) => BinOp::Div,
                _ => {
                    self.nesting = saved;
                    return Ok(left);
                }
            };
            self.deeper()?;
            self.bump();
            let right = self.unary()?;
            left = binary(op, left, right);
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.at(TokenKind::Minus) {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::unary)?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                span,
            });
        }
        let prim = self.primary()?;
        if !self.at(TokenKind::LBracket) {
            return Ok(prim);
        }
        self.bump();
        let key = self.string()?;
        self.expect(TokenKind::RBracket)?;
        let span = prim.span.to(self.prev_span());
        Ok(Expr {
            kind: ExprKind::Index(Box::new(prim), key),
            span,
        })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let Some(t) = self.peek() else {
            return Err(self.error("an expression"));
        };
        if t.value == TokenValue::OutOfRange {
            self.diags.push(
                Diagnostic::new(Code::NumberOutOfRange, t.span, format!("number `{}` is out of range", self.text_of(t)))
                    .with_help("values are signed 64-bit counts of 10⁻⁹ units: at most about 9.2 billion units"),
            );
        }
        let literal = |unit| {
            ExprKind::Lit(Literal::Number {
                unit,
                value: match t.value {
                    TokenValue::Number(v) => v,
                    _ => None,
                },
            })
        };
        let kind = match t.kind {
            TokenKind::Int | TokenKind::Decimal => literal(NumUnit::Count),
            TokenKind::Money => literal(NumUnit::Usd),
            TokenKind::Tokens => literal(NumUnit::Tokens),
            TokenKind::Duration => literal(NumUnit::Duration),
            TokenKind::Percent => literal(NumUnit::Percent),
            TokenKind::Str => ExprKind::Lit(Literal::Str(match &t.value {
                TokenValue::Str(s) => s.clone(),
                _ => String::new(),
            })),
            TokenKind::LParen => {
                self.bump();
                let inner = self.expr()?;
                self.expect(TokenKind::RParen)?;
                return Ok(Expr {
                    kind: inner.kind,
                    span: t.span.to(self.prev_span()),
                });
            }
            TokenKind::Word => return self.word_primary(),
            _ => return Err(self.error("an expression")),
        };
        self.bump();
        Ok(Expr { kind, span: t.span })
    }

    fn word_primary(&mut self) -> PResult<Expr> {
        let start = self.here();
        let word = self.word().unwrap_or("");
        if word == "true" || word == "false" {
            self.bump();
            return Ok(Expr {
                kind: ExprKind::Lit(Literal::Bool(word == "true")),
                span: start,
            });
        }
        let followed_by_paren = self.peek_at(1).is_some_and(|t| t.kind == TokenKind::LParen);
        if let Some(func) = AggFunc::from_word(word).filter(|_| followed_by_paren) {
            return self.aggregate(func);
        }
        let name = self.qname()?;
        Ok(Expr {
            span: name.span,
            kind: ExprKind::Name(name),
        })
    }

    fn aggregate(&mut self, func: AggFunc) -> PResult<Expr> {
        let start = self.here();
        self.bump();
        self.expect(TokenKind::LParen)?;
        let mut arg = None;
        let mut filter = None;
        let mut window = None;
        if func == AggFunc::Count {
            if !self.at(TokenKind::RParen) {
                arg = Some(Box::new(self.expr()?));
            }
        } else {
            arg = Some(Box::new(self.expr()?));
            if self.at_word("where") {
                self.bump();
                filter = Some(Box::new(self.expr()?));
            }
            if func == AggFunc::Rate {
                self.expect(TokenKind::Comma)?;
                window = Some(self.quantity(TokenKind::Duration)?);
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(Expr {
            kind: ExprKind::Agg {
                func,
                arg,
                filter,
                window,
            },
            span: start.to(self.prev_span()),
        })
    }
}

fn binary(op: BinOp, left: Expr, right: Expr) -> Expr {
    let span = left.span.to(right.span);
    Expr {
        kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
        span,
    }
}
