//! The listing statements, built once for both backends: filters, keyset
//! pagination and their parameters are the same on SQLite and PostgreSQL;
//! only a few fragments differ, and each backend names those in its
//! [`Dialect`]. A statement is assembled as text with numbered placeholders
//! (`?1` on SQLite, `$1` on PostgreSQL) plus its arguments in order; the
//! backend prepares and runs it.

use crate::rows::*;
use crate::*;
use std::marker::PhantomData;

/// The SQL a backend writes its own way.
pub(crate) trait Dialect: Sized {
    /// The placeholder of the `n`-th parameter, counted from 1.
    fn placeholder(n: usize) -> String;
    /// Appends ` AND <column> is one of <values>`.
    fn one_of(q: &mut Query<Self>, column: &str, values: &[String]);
    /// Appends ` AND <the JSON array text in column> contains <value>`.
    fn json_array_has(q: &mut Query<Self>, column: &str, value: &str);
}

/// A parameter value, typed as the column it is compared with (PostgreSQL
/// checks parameter types; SQLite stores any integer alike).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    /// A `SMALLINT` column (statuses).
    Int2(i16),
    /// A `BIGINT` column (times, limits).
    Int8(i64),
    /// Bound by PostgreSQL's dialect only (SQLite lists one parameter per item).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    TextArray(Vec<String>),
}

/// A statement assembled from optional filters, with its parameters.
pub(crate) struct Query<D> {
    sql: String,
    args: Vec<Arg>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Query<D> {
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
            dialect: PhantomData,
        }
    }

    pub(crate) fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    /// Adds a parameter and returns its placeholder.
    pub(crate) fn bind(&mut self, value: Arg) -> String {
        self.args.push(value);
        D::placeholder(self.args.len())
    }

    /// Appends ` AND <column> <op> <value>` with the value as a parameter.
    pub(crate) fn and(&mut self, column: &str, op: &str, value: Arg) {
        let p = self.bind(value);
        self.push(&format!(" AND {column} {op} {p}"));
    }

    /// Adds the keyset condition, ordering and limit (one row more than the
    /// page, to tell whether another follows) for `column`.
    pub(crate) fn keyset(&mut self, column: &str, page: &PageRequest) {
        if let Some(it) = &page.iterator {
            let op = match page.order {
                Order::Ascending => ">",
                Order::Descending => "<",
            };
            self.and(column, op, Arg::Text(it.clone()));
        }
        let dir = match page.order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        let p = self.bind(Arg::Int8(page.limit as i64 + 1));
        self.push(&format!(" ORDER BY {column} {dir} LIMIT {p}"));
    }

    /// The conditions of a message filter on the messages aliased `m`.
    pub(crate) fn message_filter(&mut self, f: &MessageFilter) {
        if let Some(types) = &f.event_types
            && !types.is_empty()
        {
            D::one_of(self, "m.event_type", types);
        }
        if let Some(channel) = &f.channel {
            D::json_array_has(self, "m.channels", channel);
        }
        if let Some(before) = f.before_ms {
            self.and("m.created_at", "<", Arg::Int8(before as i64));
        }
        if let Some(after) = f.after_ms {
            self.and("m.created_at", ">", Arg::Int8(after as i64));
        }
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }
}

// ---- the listings ------------------------------------------------------------

pub(crate) fn apps<D: Dialect>(page: &PageRequest) -> Query<D> {
    let mut q = Query::new(format!("SELECT {APP_COLS} FROM applications WHERE TRUE"));
    q.keyset("id", page);
    q
}

pub(crate) fn event_types<D: Dialect>(page: &PageRequest, include_archived: bool) -> Query<D> {
    let mut q = Query::new(format!("SELECT {ET_COLS} FROM event_types WHERE TRUE"));
    if !include_archived {
        q.push(" AND NOT archived");
    }
    q.keyset("name", page);
    q
}

pub(crate) fn endpoints<D: Dialect>(app: &AppId, page: &PageRequest) -> Query<D> {
    let mut q = Query::new(format!("SELECT {EP_COLS} FROM endpoints WHERE TRUE"));
    q.and("app_id", "=", Arg::Text(app.to_string()));
    q.keyset("id", page);
    q
}

/// Every endpoint, or every endpoint of one application, by id.
pub(crate) fn all_endpoints<D: Dialect>(app: Option<&AppId>) -> Query<D> {
    let mut q = Query::new(format!("SELECT {EP_COLS} FROM endpoints WHERE TRUE"));
    if let Some(app) = app {
        q.and("app_id", "=", Arg::Text(app.to_string()));
    }
    q.push(" ORDER BY id");
    q
}

/// Rows for `message_from_row` (with the payload).
pub(crate) fn messages<D: Dialect>(app: &AppId, f: &MessageFilter) -> Query<D> {
    let mut q = Query::new(format!(
        "SELECT {MSG_COLS}, m.payload FROM messages m WHERE TRUE"
    ));
    q.and("m.app_id", "=", Arg::Text(app.to_string()));
    q.message_filter(f);
    q.keyset("m.id", &f.page);
    q
}

pub(crate) fn attempts<D: Dialect>(f: &AttemptFilter) -> Query<D> {
    let needs_message = f.event_types.is_some() || f.channel.is_some();
    let mut q = Query::new(format!("SELECT {ATTEMPT_COLS} FROM attempts a"));
    if needs_message {
        q.push(" JOIN messages m ON m.app_id = a.app_id AND m.id = a.msg_id");
    }
    q.push(" WHERE TRUE");
    for (column, value) in [
        ("a.app_id", f.app_id.as_ref().map(|v| v.to_string())),
        (
            "a.endpoint_id",
            f.endpoint_id.as_ref().map(|v| v.to_string()),
        ),
        ("a.msg_id", f.msg_id.as_ref().map(|v| v.to_string())),
    ] {
        if let Some(v) = value {
            q.and(column, "=", Arg::Text(v));
        }
    }
    if let Some(status) = f.status {
        q.and("a.status", "=", Arg::Int2(i16::from(status)));
    }
    if let Some(before) = f.before_ms {
        q.and("a.created_at", "<", Arg::Int8(before as i64));
    }
    if let Some(after) = f.after_ms {
        q.and("a.created_at", ">", Arg::Int8(after as i64));
    }
    if needs_message {
        q.message_filter(&MessageFilter {
            event_types: f.event_types.clone(),
            channel: f.channel.clone(),
            ..Default::default()
        });
    }
    q.keyset("a.id", &f.page);
    q
}

/// Rows for `destination_from_row`.
pub(crate) fn deliveries_of_message<D: Dialect>(
    app: &AppId,
    msg: &MessageId,
    page: &PageRequest,
) -> Query<D> {
    let cols = endpoint_cols_of_e();
    let mut q = Query::new(format!(
        "SELECT d.msg_id, d.status AS delivery_status, d.next_attempt_at, {cols}
         FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
         WHERE TRUE"
    ));
    q.and("d.app_id", "=", Arg::Text(app.to_string()));
    q.and("d.msg_id", "=", Arg::Text(msg.to_string()));
    q.keyset("d.endpoint_id", page);
    q
}

/// Rows for `attempted_message_from_row`.
pub(crate) fn deliveries_of_endpoint<D: Dialect>(
    ep: &EndpointId,
    f: &MessageFilter,
    status: Option<u8>,
) -> Query<D> {
    let mut q = Query::new(format!(
        "SELECT d.endpoint_id, d.status AS delivery_status, d.next_attempt_at, {MSG_COLS}, m.payload
         FROM deliveries d JOIN messages m ON m.app_id = d.app_id AND m.id = d.msg_id
         WHERE TRUE"
    ));
    q.and("d.endpoint_id", "=", Arg::Text(ep.to_string()));
    if let Some(status) = status {
        q.and("d.status", "=", Arg::Int2(i16::from(status)));
    }
    q.message_filter(f);
    q.keyset("d.msg_id", &f.page);
    q
}

pub(crate) fn sources<D: Dialect>(page: &PageRequest) -> Query<D> {
    let mut q = Query::new(format!("SELECT {SOURCE_COLS} FROM sources WHERE TRUE"));
    q.keyset("id", page);
    q
}

pub(crate) fn broker_sources<D: Dialect>(page: &PageRequest) -> Query<D> {
    let mut q = Query::new(format!(
        "SELECT {BROKER_SOURCE_COLS} FROM broker_sources WHERE TRUE"
    ));
    q.keyset("id", page);
    q
}

pub(crate) fn broker_rejections<D: Dialect>(
    source: &BrokerSourceId,
    page: &PageRequest,
) -> Query<D> {
    let mut q = Query::new(format!(
        "SELECT {REJECTION_COLS} FROM broker_rejections WHERE TRUE"
    ));
    q.and("source_id", "=", Arg::Text(source.to_string()));
    q.keyset("id", page);
    q
}

pub(crate) fn tokens<D: Dialect>(kind: TokenKind, page: &PageRequest) -> Query<D> {
    let mut q = Query::new(format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE TRUE"));
    q.and("kind", "=", Arg::Text(kind.as_str().to_owned()));
    q.keyset("id", page);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> MessageFilter {
        MessageFilter {
            event_types: Some(vec!["a".into(), "b".into()]),
            channel: Some("eu".into()),
            after_ms: Some(5),
            page: PageRequest {
                limit: 10,
                iterator: Some("msg_x".into()),
                order: Order::Descending,
            },
            ..Default::default()
        }
    }

    fn app() -> AppId {
        AppId::from_trusted("app_1".into())
    }

    #[test]
    fn sqlite_parameters_are_numbered_in_the_order_they_are_bound() {
        let q = messages::<crate::sqlite::Sqlite>(&app(), &filter());
        assert!(
            q.sql().ends_with(
                " WHERE TRUE AND m.app_id = ?1 AND m.event_type IN (?2,?3) \
                 AND EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ?4) \
                 AND m.created_at > ?5 AND m.id < ?6 ORDER BY m.id DESC LIMIT ?7"
            ),
            "{}",
            q.sql()
        );
        assert_eq!(
            q.args(),
            [
                Arg::Text("app_1".into()),
                Arg::Text("a".into()),
                Arg::Text("b".into()),
                Arg::Text("eu".into()),
                Arg::Int8(5),
                Arg::Text("msg_x".into()),
                Arg::Int8(11),
            ]
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_parameters_are_numbered_in_the_order_they_are_bound() {
        let q = messages::<crate::postgres::Postgres>(&app(), &filter());
        assert!(
            q.sql().ends_with(
                " WHERE TRUE AND m.app_id = $1 AND m.event_type = ANY($2) \
                 AND m.channels::jsonb ? $3 AND m.created_at > $4 AND m.id < $5 \
                 ORDER BY m.id DESC LIMIT $6"
            ),
            "{}",
            q.sql()
        );
        assert_eq!(
            q.args(),
            [
                Arg::Text("app_1".into()),
                Arg::TextArray(vec!["a".into(), "b".into()]),
                Arg::Text("eu".into()),
                Arg::Int8(5),
                Arg::Text("msg_x".into()),
                Arg::Int8(11),
            ]
        );
    }
}
