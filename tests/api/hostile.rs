//! What strangers and failures do: floods of bad tokens are limited and
//! audited in aggregate, tokens in URLs are ignored, and an audit log that
//! cannot be written refuses the action it would record.

use reqwest::Method;
use serde_json::Value;

use crate::common::{forged_operator_token, spawn_app, spawn_app_with};

#[tokio::test]
async fn failed_attempts_are_rate_limited_and_audited_in_aggregate() {
    let app = spawn_app_with(|c| c.limits.auth_failures_per_minute = 3).await;
    let forged = forged_operator_token();
    for _ in 0..3 {
        let resp = app
            .request(Method::GET, "/api/v1/cases", Some(&forged), None)
            .await;
        assert_eq!(resp.status(), 401);
    }
    for token in [&forged, &app.coordinator, &forged, &forged] {
        let resp = app
            .request(Method::GET, "/api/v1/cases", Some(token), None)
            .await;
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "rate_limited");
    }
    // Public routes stay reachable.
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None)
            .await
            .status(),
        200
    );

    // Read the log straight from the database: the compliance token comes
    // from the same (limited) address.
    let pool = app.db().await;
    let limited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.rate_limited'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let denials: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'case.list' AND outcome = 'deny'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        limited, 1,
        "one aggregate entry, not one per refused request"
    );
    assert_eq!(denials, 3);
    app.stop().await;
}

#[tokio::test]
async fn tokens_in_the_query_string_are_not_accepted() {
    let app = spawn_app().await;
    for path in [
        format!("/api/v1/cases?token={}", app.coordinator),
        format!("/api/v1/cases?access_token={}", app.coordinator),
    ] {
        let resp = app.request(Method::GET, &path, None, None).await;
        assert_eq!(resp.status(), 401, "{path}");
    }
    for header in [
        format!("Basic {}", app.coordinator),
        app.coordinator.clone(),
        "Bearer".to_string(),
    ] {
        let resp = app
            .client
            .get(app.url("/api/v1/cases"))
            .header("authorization", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_the_action() {
    let app = spawn_app().await;
    let pool = app.db().await;
    let (break_log, mend_log) = if app.on_postgres() {
        (
            "CREATE FUNCTION audit_broken() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'disk full'; END; $$;
             CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log
             FOR EACH ROW EXECUTE FUNCTION audit_broken();",
            "DROP TRIGGER audit_broken ON audit_log",
        )
    } else {
        (
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            "DROP TRIGGER audit_broken",
        )
    };
    sqlx::raw_sql(break_log).execute(&pool).await.unwrap();
    let resp = app
        .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "audit_unavailable"
    );
    let cases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cases, 0, "the case must not exist without its audit entry");
    // Denials fail closed too: no entry, no answer but 503.
    let resp = app.request(Method::GET, "/api/v1/cases", None, None).await;
    assert_eq!(resp.status(), 503);

    sqlx::raw_sql(mend_log).execute(&pool).await.unwrap();
    let resp = app
        .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn audit_rows_cannot_be_rewritten_in_place() {
    let app = spawn_app().await;
    app.create_case(None).await;
    let pool = app.db().await;
    assert!(
        sqlx::query("UPDATE audit_log SET outcome = 'deny'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&pool)
            .await
            .is_err()
    );
    app.stop().await;
}

#[tokio::test]
async fn audit_export_filters_and_csv() {
    let app = spawn_app().await;
    let (case_a, _) = app.create_case(None).await;
    let (case_b, _) = app.create_case(None).await;
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/audit?case_id={case_a}"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.headers()["content-type"], "application/jsonl");
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains(&case_a) && !text.contains(&case_b));

    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit?format=csv&outcome=allow&action=case.create",
            Some(&app.compliance),
            None,
        )
        .await;
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,time,actor"));
    assert_eq!(lines.len(), 3);

    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.text().await.unwrap(), "");
    for bad in [
        "?format=xml",
        "?since=yesterday",
        "?outcome=maybe",
        "?bogus=1",
    ] {
        let resp = app
            .request(
                Method::GET,
                &format!("/api/v1/audit{bad}"),
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    app.stop().await;
}
