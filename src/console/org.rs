//! The console's organisation pages: people (users, teams, tokens), categories and the
//! audit log. Like every console form, each calls the gRPC API's own handler for the
//! signed-in user, so a page shows what the API answers them: a member sees the users,
//! the teams and their own tokens (and makes and revokes their own), an admin manages
//! them all; the audit log is for admins.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;

use super::admin::{hand_out, show_secret};
use super::pages::{layout, page, refused, wire_time};
use super::session::Handout;
use super::{Console, Posted, SignedIn};
use crate::proto;
use crate::proto::stream_admin_server::StreamAdmin;

/// Audit entries on one page of the log.
const AUDIT_PAGE: u32 = 100;

fn back_to(path: &str) -> Response {
    Redirect::to(path).into_response()
}

// ----------------------------------------------------------------------------------
// People: users, teams, tokens

pub async fn people(State(console): State<Console>, signed_in: SignedIn) -> Response {
    let users = api!(
        console,
        admin,
        signed_in,
        list_users,
        proto::ListUsersRequest::default()
    )
    .users;
    let teams = api!(
        console,
        admin,
        signed_in,
        list_teams,
        proto::ListTeamsRequest {}
    )
    .teams;
    // An admin sees every token of the organisation; a member their own.
    let everyone = if signed_in.who.is_admin() { "*" } else { "" };
    let tokens = proto::ListTokensRequest {
        user: everyone.to_owned(),
        ..Default::default()
    };
    let tokens = api!(console, admin, signed_in, list_tokens, tokens).tokens;
    let csrf = signed_in.csrf_field();
    let admin = signed_in.who.is_admin();
    let role_options = |current: &str| {
        html! {
            @for role in ["member", "admin", "runner"] {
                option value=(role) selected[role == current] { (role) }
            }
        }
    };
    let markup = layout(
        "People",
        Some(&signed_in),
        html! {
            h1 { "People" }
            section aria-labelledby="users" {
                h2 #users { "Users" }
                table.users {
                    thead { tr { th { "User" } th { "Role" } th { "Teams" } th { "Since" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { (u.name) }
                                td {
                                    @if admin {
                                        form.inline method="post" action="/console/people/role" {
                                            (csrf)
                                            input type="hidden" name="name" value=(u.name);
                                            select name="role" aria-label={ "Role of " (u.name) } { (role_options(&u.role)) }
                                            button.secondary type="submit" { "Set" }
                                        }
                                    } @else { (u.role) }
                                }
                                td { (u.teams.join(", ")) }
                                td { (wire_time(u.created_at.as_ref())) }
                                td {
                                    @if admin {
                                        form.inline method="post" action="/console/people/delete" {
                                            (csrf)
                                            input type="hidden" name="name" value=(u.name);
                                            button.secondary type="submit" aria-label={ "Delete user " (u.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if admin {
                    form.grant method="post" action="/console/people" {
                        (csrf)
                        label { "New user " input name="name" required maxlength="200"; }
                        label { "Role " select name="role" { (role_options("member")) } }
                        button type="submit" { "Add user" }
                    }
                }
            }
            section aria-labelledby="teams" {
                h2 #teams { "Teams" }
                ul.grants {
                    @for t in &teams {
                        li {
                            strong { (t.name) } ": "
                            @if t.members.is_empty() { "no members" } @else { (t.members.join(", ")) }
                            @if admin {
                                form.inline method="post" action="/console/teams/delete" {
                                    (csrf)
                                    input type="hidden" name="team" value=(t.name);
                                    button.secondary type="submit" aria-label={ "Delete team " (t.name) } { "Delete" }
                                }
                            }
                        }
                    }
                }
                @if admin {
                    form.grant method="post" action="/console/teams" {
                        (csrf)
                        label { "New team " input name="team" required maxlength="200"; }
                        button type="submit" { "Add team" }
                    }
                    form.grant method="post" action="/console/teams/members" {
                        (csrf)
                        label { "Team " input name="team" list="team-names" required; }
                        datalist #team-names { @for t in &teams { option value=(t.name) {} } }
                        label { "User " input name="user" list="user-names" required; }
                        label { "Change "
                            select name="change" { option value="add" { "add to the team" } option value="remove" { "remove from the team" } }
                        }
                        button type="submit" { "Apply" }
                    }
                }
            }
            section aria-labelledby="tokens" {
                h2 #tokens { "Tokens" }
                table.tokens {
                    thead { tr { th { "Token" } th { "User" } th { "Created" } th { "Last used" } th { "Expires" } th { "Revoked" } th { span.visually-hidden { "Action" } } } }
                    tbody {
                        @for t in &tokens {
                            tr class=[t.revoked_at.as_ref().map(|_| "revoked")] {
                                td { (t.name) " " code { (t.id) } }
                                td { (t.user) }
                                td { (wire_time(t.created_at.as_ref())) }
                                td { (wire_time(t.last_used_at.as_ref())) }
                                td { (wire_time(t.expires_at.as_ref())) }
                                td { (wire_time(t.revoked_at.as_ref())) }
                                td {
                                    @if t.revoked_at.is_none() {
                                        form.inline method="post" action="/console/tokens/revoke" {
                                            (csrf)
                                            input type="hidden" name="id" value=(t.id);
                                            button.secondary type="submit" aria-label={ "Revoke token " (t.id) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.grant method="post" action="/console/tokens" {
                    (csrf)
                    label { "New token named " input name="name" required maxlength="200" placeholder="laptop"; }
                    label { "for " input name="user" list="user-names" required value=(signed_in.who.name); }
                    datalist #user-names { @for u in &users { option value=(u.name) {} } }
                    label { "valid to the end of (optional, UTC) " input type="date" name="expires"; }
                    button type="submit" { "Create token" }
                }
            }
        },
    );
    page(StatusCode::OK, markup)
}

#[derive(Deserialize)]
pub struct UserForm {
    name: String,
    #[serde(default)]
    role: String,
}

pub async fn create_user(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<UserForm>,
) -> Response {
    let request = proto::CreateUserRequest {
        name: form.name,
        role: form.role,
    };
    api!(console, admin, signed_in, create_user, request);
    back_to("/console/people")
}

pub async fn set_role(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<UserForm>,
) -> Response {
    let request = proto::SetUserRoleRequest {
        name: form.name,
        role: form.role,
    };
    api!(console, admin, signed_in, set_user_role, request);
    back_to("/console/people")
}

pub async fn delete_user(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<UserForm>,
) -> Response {
    api!(
        console,
        admin,
        signed_in,
        delete_user,
        proto::UserRef { name: form.name }
    );
    back_to("/console/people")
}

#[derive(Deserialize)]
pub struct TeamForm {
    team: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    change: String,
}

pub async fn create_team(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<TeamForm>,
) -> Response {
    api!(
        console,
        admin,
        signed_in,
        create_team,
        proto::TeamRef { name: form.team }
    );
    back_to("/console/people")
}

pub async fn delete_team(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<TeamForm>,
) -> Response {
    api!(
        console,
        admin,
        signed_in,
        delete_team,
        proto::TeamRef { name: form.team }
    );
    back_to("/console/people")
}

pub async fn team_member(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<TeamForm>,
) -> Response {
    let request = proto::TeamMemberRequest {
        team: form.team,
        user: form.user,
    };
    if form.change == "remove" {
        api!(console, admin, signed_in, remove_team_member, request);
    } else {
        api!(console, admin, signed_in, add_team_member, request);
    }
    back_to("/console/people")
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    user: String,
    /// A date (`2027-01-31`): the token works to its end, UTC.
    #[serde(default)]
    expires: String,
}

pub async fn create_token(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<TokenForm>,
) -> Response {
    let expires_at = match form.expires.trim() {
        "" => None,
        date => match date
            .parse::<jiff::civil::Date>()
            .and_then(|d| d.tomorrow())
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()))
        {
            Ok(at) => Some(crate::wire::timestamp(at)),
            Err(e) => {
                return super::pages::error_page(
                    StatusCode::BAD_REQUEST,
                    "Not possible",
                    &format!("The expiry date {date:?} is not a date (YYYY-MM-DD): {e}"),
                );
            }
        },
    };
    let request = proto::CreateTokenRequest {
        name: form.name,
        user: form.user,
        expires_at,
    };
    let created = api!(console, admin, signed_in, create_token, request);
    let Some(token) = created.token else {
        return refused(
            &console.state,
            &tonic::Status::internal("no token in the answer"),
        );
    };
    let handout = Handout::new(
        token.id.clone(),
        format!("Token {} of {}", token.name, token.user),
        vec![("Token", token.id.clone()), ("User", token.user.clone())],
        super::admin::file_name(&token.name, "token"),
        ("/console/people".to_owned(), "People".to_owned()),
        format!("/console/tokens/{}/secret", token.id),
        SecretString::from(created.secret),
    );
    hand_out(&console, &signed_in, handout)
}

pub async fn token_secret(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    show_secret(
        &console,
        &signed_in,
        &id,
        "Create another token and revoke this one.",
        html! {
            "Use it as " code { "KPISTREAM_TOKEN" } " or in a file named by " code { "KPISTREAM_TOKEN_FILE" }
            " (mode 0600), or paste it on the console's sign-in page."
        },
    )
}

#[derive(Deserialize)]
pub struct RevokeTokenForm {
    id: String,
}

pub async fn revoke_token(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<RevokeTokenForm>,
) -> Response {
    api!(
        console,
        admin,
        signed_in,
        revoke_token,
        proto::RevokeTokenRequest { id: form.id }
    );
    back_to("/console/people")
}

// ----------------------------------------------------------------------------------
// Categories

pub async fn categories(State(console): State<Console>, signed_in: SignedIn) -> Response {
    let categories = api!(
        console,
        admin,
        signed_in,
        list_categories,
        proto::ListCategoriesRequest {}
    )
    .categories;
    let csrf = signed_in.csrf_field();
    let admin = signed_in.who.is_admin();
    let markup = layout(
        "Categories",
        Some(&signed_in),
        html! {
            h1 { "Categories" }
            table.categories {
                thead { tr { th { "Category" } th.num { "Streams" } th { "Rename" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for c in &categories {
                        tr {
                            td { a href={ "/console?category=" (urlencoded(&c.name)) } { (c.name) } }
                            td.num { (c.stream_count) }
                            td {
                                @if admin {
                                form.inline method="post" action="/console/categories/rename" {
                                    (csrf)
                                    input type="hidden" name="name" value=(c.name);
                                    input name="new_name" required aria-label={ "New name of " (c.name) } placeholder="new name";
                                    button.secondary type="submit" { "Rename" }
                                }
                                }
                            }
                            td {
                                @if admin {
                                form.inline method="post" action="/console/categories/delete" {
                                    (csrf)
                                    input type="hidden" name="name" value=(c.name);
                                    button.secondary type="submit" aria-label={ "Delete category " (c.name) } { "Delete" }
                                }
                                }
                            }
                        }
                    }
                }
            }
            @if categories.is_empty() { p.empty { "No category yet." } }
            @if admin {
            form.grant method="post" action="/console/categories" {
                (csrf)
                label { "New category " input name="name" required maxlength="200"; }
                button type="submit" { "Add category" }
            }
            }
        },
    );
    page(StatusCode::OK, markup)
}

fn urlencoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[derive(Deserialize)]
pub struct CategoryForm {
    name: String,
    #[serde(default)]
    new_name: String,
}

pub async fn create_category(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<CategoryForm>,
) -> Response {
    let request = proto::CreateCategoryRequest { name: form.name };
    api!(console, admin, signed_in, create_category, request);
    back_to("/console/categories")
}

pub async fn rename_category(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<CategoryForm>,
) -> Response {
    let request = proto::RenameCategoryRequest {
        name: form.name,
        new_name: form.new_name,
    };
    api!(console, admin, signed_in, rename_category, request);
    back_to("/console/categories")
}

pub async fn delete_category(
    State(console): State<Console>,
    Posted { signed_in, form }: Posted<CategoryForm>,
) -> Response {
    let request = proto::DeleteCategoryRequest { name: form.name };
    api!(console, admin, signed_in, delete_category, request);
    back_to("/console/categories")
}

// ----------------------------------------------------------------------------------
// The audit log

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    /// A date: entries from its start (UTC) on.
    #[serde(default)]
    since: String,
    #[serde(default)]
    page: String,
}

pub async fn audit(
    State(console): State<Console>,
    signed_in: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Response {
    let since = match query.since.trim() {
        "" => None,
        date => match date
            .parse::<jiff::civil::Date>()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
        {
            Ok(at) => Some(crate::wire::timestamp(at.timestamp())),
            Err(e) => {
                return super::pages::error_page(
                    StatusCode::BAD_REQUEST,
                    "Not possible",
                    &format!("{date:?} is not a date (YYYY-MM-DD): {e}"),
                );
            }
        },
    };
    let request = proto::ListAuditRequest {
        target: query.target.trim().to_owned(),
        actor: query.actor.trim().to_owned(),
        since,
        until: None,
        limit: AUDIT_PAGE,
        page_token: query.page.clone(),
    };
    let answer = api!(console, admin, signed_in, list_audit, request);
    let older = (!answer.next_page_token.is_empty()).then(|| {
        format!(
            "/console/audit?actor={}&target={}&since={}&page={}",
            urlencoded(&query.actor),
            urlencoded(&query.target),
            urlencoded(&query.since),
            urlencoded(&answer.next_page_token)
        )
    });
    let markup = layout(
        "Audit log",
        Some(&signed_in),
        html! {
            h1 { "Audit log" }
            form.filters method="get" action="/console/audit" {
                label { "Actor " input name="actor" value=(query.actor) placeholder="user name"; }
                label { "Target " input name="target" value=(query.target) placeholder="stream id, user, connector"; }
                label { "Since " input type="date" name="since" value=(query.since); }
                button type="submit" { "Filter" }
            }
            table.audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Detail" } } }
                tbody {
                    @for e in answer.entries.iter().rev() {
                        tr {
                            td { (wire_time(e.at.as_ref())) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.target_kind) " " code { (e.target_id) } }
                            td { (e.detail) }
                        }
                    }
                }
            }
            @if answer.entries.is_empty() { p.empty { "Nothing recorded matches." } }
            @if let Some(older) = older { p { a href=(older) { "Older entries →" } } }
        },
    );
    page(StatusCode::OK, markup)
}
