//! Who may do what, against the real server binary. The table of `docs/permissions.md`
//! is written out below as data, one row per call; the test makes every `StreamAdmin`
//! and `Query` call as every kind of caller, each on fresh fixtures, and reports every
//! cell whose answer differs from the doc. The modules test the rest of the access
//! model: ids of another organisation that answer exactly like ids that do not exist,
//! tokens kept only as hashes, team membership that counts from the next call, stream
//! lists, and the audit log.

mod common;

#[path = "permissions/access_model.rs"]
mod access_model;
#[path = "permissions/audit.rs"]
mod audit;
#[path = "permissions/cross_org.rs"]
mod cross_org;
#[path = "permissions/fixtures.rs"]
mod fixtures;

use std::collections::BTreeSet;
use std::time::Instant;

use futures::StreamExt;
use tonic::Code;

use fixtures::{World, code_name, tail};

/// How many table cells run at once: concurrent admin writes are part of what is
/// tested (the store takes its write lock up front, so none is refused as "locked").
const CONCURRENT_CELLS: usize = 16;

// ---------------------------------------------------------------------------------------
// The expected-results table of docs/permissions.md
// ---------------------------------------------------------------------------------------

/// Every call of the two token-guarded services; the token calls appear twice, once on
/// the caller's own tokens and once on another user's, as the doc's table splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    CreateStream,
    ListStreams,
    GetStream,
    UpdateStream,
    DisableStream,
    EnableStream,
    DeleteStream,
    RotateKey,
    RevokeKey,
    AddKey,
    ListKeys,
    CreateCategory,
    ListCategories,
    RenameCategory,
    DeleteCategory,
    WhoAmI,
    CreateOrg,
    CreateUser,
    ListUsers,
    SetUserRole,
    DeleteUser,
    CreateTeam,
    ListTeams,
    DeleteTeam,
    AddTeamMember,
    RemoveTeamMember,
    CreateOwnToken,
    CreateTokenForAnother,
    ListOwnTokens,
    ListTokensOfAnother,
    RevokeOwnToken,
    RevokeTokenOfAnother,
    AddGrant,
    RemoveGrant,
    ListGrants,
    ListAudit,
    CreateWebhook,
    ListWebhooks,
    DeleteWebhook,
    SetWebhookEnabled,
    ListDeliveries,
    CreateAlertSubscription,
    ListAlertSubscriptions,
    DeleteAlertSubscription,
    ListPoints,
    Latest,
    ListRevisions,
    Watch,
}

impl Call {
    /// The RPC's name in the .proto files.
    fn rpc(self) -> String {
        match self {
            Self::CreateOwnToken | Self::CreateTokenForAnother => "CreateToken".into(),
            Self::ListOwnTokens | Self::ListTokensOfAnother => "ListTokens".into(),
            Self::RevokeOwnToken | Self::RevokeTokenOfAnother => "RevokeToken".into(),
            other => format!("{other:?}"),
        }
    }

    /// The RPC with the case of the table's row, for the failure report.
    fn label(self) -> String {
        match self {
            Self::CreateOwnToken | Self::ListOwnTokens | Self::RevokeOwnToken => {
                format!("{} (own)", self.rpc())
            }
            Self::CreateTokenForAnother
            | Self::ListTokensOfAnother
            | Self::RevokeTokenOfAnother => {
                format!("{} (another user's)", self.rpc())
            }
            Self::ListPoints | Self::Latest | Self::ListRevisions | Self::Watch => {
                format!("Query.{self:?}")
            }
            _ => self.rpc(),
        }
    }

    /// Calls addressed to one stream, each made on a fixture stream of its own.
    fn on_stream(self) -> bool {
        use Call::*;
        matches!(
            self,
            GetStream
                | ListPoints
                | Latest
                | ListRevisions
                | Watch
                | UpdateStream
                | DisableStream
                | EnableStream
                | DeleteStream
                | RotateKey
                | RevokeKey
                | AddKey
                | ListKeys
                | AddGrant
                | RemoveGrant
                | ListGrants
        )
    }

    fn on_token(self) -> bool {
        use Call::*;
        matches!(
            self,
            CreateOwnToken
                | CreateTokenForAnother
                | ListOwnTokens
                | ListTokensOfAnother
                | RevokeOwnToken
                | RevokeTokenOfAnother
        )
    }
}

/// One cell of the table.
#[derive(Debug, Clone, Copy)]
enum Want {
    Is(Code),
    /// "OK for the server admin, else PERMISSION_DENIED".
    ServerAdminOnly,
}

const OK: Want = Want::Is(Code::Ok);
const UNAUTHENTICATED: Want = Want::Is(Code::Unauthenticated);
const NOT_FOUND: Want = Want::Is(Code::NotFound);
const DENIED: Want = Want::Is(Code::PermissionDenied);

/// A row of the table: the call, then the doc's columns in its order: none, member,
/// reader, manager, admin, other admin, runner.
struct Row {
    call: Call,
    cells: [Want; 7],
}

const fn row(call: Call, cells: [Want; 7]) -> Row {
    Row { call, cells }
}

const READ_STREAM: [Want; 7] = [UNAUTHENTICATED, NOT_FOUND, OK, OK, OK, NOT_FOUND, OK];
const MANAGE_STREAM: [Want; 7] = [
    UNAUTHENTICATED,
    NOT_FOUND,
    DENIED,
    OK,
    OK,
    NOT_FOUND,
    DENIED,
];
const ANYONE: [Want; 7] = [UNAUTHENTICATED, OK, OK, OK, OK, OK, OK];
const PEOPLE: [Want; 7] = [UNAUTHENTICATED, OK, OK, OK, OK, OK, DENIED];
const ADMIN_CREATES: [Want; 7] = [UNAUTHENTICATED, DENIED, DENIED, DENIED, OK, OK, DENIED];
const ADMIN_CHANGES: [Want; 7] = [
    UNAUTHENTICATED,
    DENIED,
    DENIED,
    DENIED,
    OK,
    NOT_FOUND,
    DENIED,
];

/// docs/permissions.md, "What each call answers", one row per call.
const TABLE: [Row; 48] = {
    use Call::*;
    [
        row(GetStream, READ_STREAM),
        row(ListPoints, READ_STREAM),
        row(Latest, READ_STREAM),
        row(ListRevisions, READ_STREAM),
        row(Watch, READ_STREAM),
        row(UpdateStream, MANAGE_STREAM),
        row(DisableStream, MANAGE_STREAM),
        row(EnableStream, MANAGE_STREAM),
        row(DeleteStream, MANAGE_STREAM),
        row(RotateKey, MANAGE_STREAM),
        row(RevokeKey, MANAGE_STREAM),
        row(AddKey, MANAGE_STREAM),
        row(ListKeys, MANAGE_STREAM),
        row(AddGrant, MANAGE_STREAM),
        row(RemoveGrant, MANAGE_STREAM),
        row(ListGrants, MANAGE_STREAM),
        row(ListStreams, ANYONE),
        row(CreateStream, PEOPLE),
        row(ListCategories, ANYONE),
        row(ListUsers, ANYONE),
        row(ListTeams, ANYONE),
        row(WhoAmI, ANYONE),
        row(CreateCategory, ADMIN_CREATES),
        row(CreateUser, ADMIN_CREATES),
        row(CreateTeam, ADMIN_CREATES),
        row(RenameCategory, ADMIN_CHANGES),
        row(DeleteCategory, ADMIN_CHANGES),
        row(SetUserRole, ADMIN_CHANGES),
        row(DeleteUser, ADMIN_CHANGES),
        row(DeleteTeam, ADMIN_CHANGES),
        row(AddTeamMember, ADMIN_CHANGES),
        row(RemoveTeamMember, ADMIN_CHANGES),
        row(CreateOwnToken, ANYONE),
        row(ListOwnTokens, ANYONE),
        row(CreateTokenForAnother, ADMIN_CHANGES),
        row(ListTokensOfAnother, ADMIN_CHANGES),
        row(RevokeOwnToken, ANYONE),
        row(RevokeTokenOfAnother, ADMIN_CHANGES),
        row(ListAudit, ADMIN_CREATES),
        row(CreateWebhook, ADMIN_CREATES),
        row(ListWebhooks, ADMIN_CREATES),
        row(ListDeliveries, ADMIN_CREATES),
        row(CreateAlertSubscription, ADMIN_CREATES),
        row(ListAlertSubscriptions, ADMIN_CREATES),
        row(DeleteWebhook, ADMIN_CHANGES),
        row(SetWebhookEnabled, ADMIN_CHANGES),
        row(DeleteAlertSubscription, ADMIN_CHANGES),
        row(
            CreateOrg,
            [
                UNAUTHENTICATED,
                DENIED,
                DENIED,
                DENIED,
                Want::ServerAdminOnly,
                DENIED,
                DENIED,
            ],
        ),
    ]
};

/// The kinds of caller the table's columns stand for: the doc's "none" is three roles,
/// its "reader" three (a grant to the user, to one of their teams, to the organisation),
/// and its "admin" two (an org admin, and the server admin who is also one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    NoToken,
    RevokedToken,
    ExpiredToken,
    Member,
    ReaderDirect,
    ReaderTeam,
    ReaderOrg,
    Manager,
    OrgAdmin,
    ServerAdmin,
    OtherAdmin,
    Runner,
}

impl Role {
    const ALL: [Role; 12] = [
        Self::NoToken,
        Self::RevokedToken,
        Self::ExpiredToken,
        Self::Member,
        Self::ReaderDirect,
        Self::ReaderTeam,
        Self::ReaderOrg,
        Self::Manager,
        Self::OrgAdmin,
        Self::ServerAdmin,
        Self::OtherAdmin,
        Self::Runner,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::NoToken => "no token",
            Self::RevokedToken => "revoked token",
            Self::ExpiredToken => "expired token",
            Self::Member => "member without grant",
            Self::ReaderDirect => "reader (direct grant)",
            Self::ReaderTeam => "reader (through a team)",
            Self::ReaderOrg => "reader (through the org)",
            Self::Manager => "manager",
            Self::OrgAdmin => "org admin",
            Self::ServerAdmin => "server admin",
            Self::OtherAdmin => "admin of another org",
            Self::Runner => "runner",
        }
    }

    /// The user of the first organisation whose token the role's client carries. The
    /// server admin is the first start's admin; the revoked and the expired token are
    /// the server admin's too, so that even the strongest user's dead token does nothing.
    fn user(self) -> Option<&'static str> {
        match self {
            Self::Member => Some("member"),
            Self::ReaderDirect => Some("reader"),
            Self::ReaderTeam => Some("teamreader"),
            Self::ReaderOrg => Some("orgreader"),
            Self::Manager => Some("manager"),
            Self::OrgAdmin => Some("orgadmin"),
            Self::Runner => Some("runner"),
            _ => None,
        }
    }

    /// The grant a fixture stream carries for this role.
    fn grant(self) -> Option<&'static str> {
        match self {
            Self::ReaderDirect => Some("user:reader:read"),
            Self::ReaderTeam => Some("team:readers:read"),
            Self::ReaderOrg => Some("org:read"),
            Self::Manager => Some("user:manager:manage"),
            _ => None,
        }
    }

    /// The code the table expects of this role in `cells`.
    fn expects(self, cells: &[Want; 7]) -> Code {
        let column = match self {
            Self::NoToken | Self::RevokedToken | Self::ExpiredToken => 0,
            Self::Member => 1,
            Self::ReaderDirect | Self::ReaderTeam | Self::ReaderOrg => 2,
            Self::Manager => 3,
            Self::OrgAdmin | Self::ServerAdmin => 4,
            Self::OtherAdmin => 5,
            Self::Runner => 6,
        };
        match (cells[column], self) {
            (Want::Is(code), _) => code,
            (Want::ServerAdminOnly, Self::ServerAdmin) => Code::Ok,
            (Want::ServerAdminOnly, _) => Code::PermissionDenied,
        }
    }
}

/// The RPC names declared in the .proto files of the two token-guarded services.
fn declared_rpcs() -> BTreeSet<String> {
    let rpc = regex::Regex::new(r"(?m)^\s*rpc\s+(\w+)\s*\(").unwrap();
    [
        include_str!("../proto/kpistream/v1/streams.proto"),
        include_str!("../proto/kpistream/v1/query.proto"),
    ]
    .iter()
    .flat_map(|text| rpc.captures_iter(text).map(|c| c[1].to_owned()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_answers_every_kind_of_caller_as_the_permissions_table_says() {
    let in_table: BTreeSet<String> = TABLE.iter().map(|r| r.call.rpc()).collect();
    assert_eq!(
        in_table,
        declared_rpcs(),
        "the table must have a row for every StreamAdmin and Query RPC"
    );

    let world = World::build().await;
    let started = Instant::now();
    let cells = TABLE
        .iter()
        .flat_map(|row| Role::ALL.map(|role| (row, role)));
    let outcomes: Vec<_> = futures::stream::iter(cells)
        .map(|(row, role)| {
            let world = &world;
            async move { (row, role, world.attempt(row.call, role).await) }
        })
        .buffer_unordered(CONCURRENT_CELLS)
        .collect()
        .await;
    let cells = outcomes.len();
    let server_trouble = outcomes.iter().any(|(_, _, outcome)| {
        outcome
            .as_ref()
            .is_err_and(|s| matches!(s.code(), Code::Unavailable | Code::Internal))
    });

    let mut wrong: Vec<String> = outcomes
        .into_iter()
        .filter_map(|(row, role, outcome)| {
            let expected = role.expects(&row.cells);
            let (got, message) = match &outcome {
                Ok(()) => (Code::Ok, String::new()),
                Err(status) => (status.code(), status.message().to_owned()),
            };
            (got != expected).then(|| {
                format!(
                    "{:<28} {:<26} expected {:<17} got {:<17} {message}",
                    row.call.label(),
                    role.label(),
                    code_name(expected),
                    code_name(got),
                )
            })
        })
        .collect();
    wrong.sort();
    let log = if server_trouble {
        let log = world.server.logs();
        format!("\n\nend of the server log:\n{}", tail(&log, 4000))
    } else {
        String::new()
    };
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ from docs/permissions.md (ran in {:.1?}):\n{}{log}",
        wrong.len(),
        started.elapsed(),
        wrong.join("\n"),
    );
}
