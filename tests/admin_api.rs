//! Foundation, end to end over real HTTP on both databases: admin token, registry CRUD, validation,
//! conflicts, references, secrets sealed and masked, restart keeps everything, health and metrics.

mod common;

use common::{Db, TestApp};
use serde_json::{json, Value};

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";

async fn admin_token_is_required(db: Db) {
    let app = TestApp::start(db).await;
    let url = app.url("/admin/api/v1/apps");
    let r = app.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = app.http.get(&url).bearer_auth("wbr_wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.http.get(&url).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Rotation: the old token stops working at once.
    let new = wabridge::admin_token::rotate(&app.svc.store).await.unwrap();
    assert_eq!(app.http.get(&url).bearer_auth(&app.token).send().await.unwrap().status(), 401);
    assert_eq!(app.http.get(&url).bearer_auth(&new).send().await.unwrap().status(), 200);
    app.stop().await;
}

async fn create_app_waba_phone_portal(db: Db) {
    let app = TestApp::start(db).await;
    let (a, w, p) = app.seed(SECRET).await;
    assert_eq!(a["app_secret"], "f00d…4242", "secret masked");
    assert_eq!(a["access_token"], "EAAG…0001");
    let vt = a["verify_token"].as_str().unwrap();
    assert!(vt.len() >= 32 && vt.chars().all(|c| c.is_ascii_alphanumeric()), "{vt}");
    assert_eq!(a["webhook_urls"]["by_domain"], "https://wb.example.com/api/waba/");
    assert_eq!(a["webhook_urls"]["by_app_id"], "https://wb.example.com/api/waba/?app_id=1234567890");
    assert_eq!(w["app"], a["id"]);
    assert_eq!(p["number"], "+5511930001234", "normalised to E.164");
    assert_eq!(p["waba"], w["id"]);
    assert_eq!(p["sms_service"], false);

    let (s, portal) = app
        .admin(
            "POST",
            "/portals",
            Some(json!({"member_id": "a1b2c3", "domain": "acme.bitrix24.com",
                        "client_endpoint": "https://acme.bitrix24.com/rest/",
                        "access_token": "portal-access-token-123456", "refresh_token": "portal-refresh-token-654321",
                        "application_token": "app-token-abcdef0123456789"})),
        )
        .await;
    assert_eq!(s, 201, "{portal}");
    assert_eq!(portal["active"], true);
    assert_eq!(portal["access_token"], "port…3456");
    assert_eq!(portal["application_token"], "app-…6789");

    // Bind the phone to the portal, set flags; then unbind with null.
    let path = format!("/phones/{}", p["id"]);
    let (s, bound) =
        app.admin("PATCH", &path, Some(json!({"portal": portal["id"], "sms_service": true, "file_proxy": true}))).await;
    assert_eq!(s, 200, "{bound}");
    assert_eq!(bound["portal"], portal["id"]);
    assert_eq!(bound["sms_service"], true);
    let (s, listed) = app.admin("GET", "/phones", None).await;
    assert_eq!(s, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, shown) = app.admin("GET", &path, None).await;
    assert_eq!(shown["file_proxy"], true);

    // A portal with phones bound cannot be uninstalled; unbind first.
    let ppath = format!("/portals/{}", portal["id"]);
    let (s, err) = app.admin("DELETE", &ppath, None).await;
    assert_eq!(s, 409, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("bound"), "{err}");
    let (s, unbound) = app.admin("PATCH", &path, Some(json!({"portal": null}))).await;
    assert_eq!(s, 200);
    assert_eq!(unbound["portal"], Value::Null);
    let (s, gone) = app.admin("DELETE", &ppath, None).await;
    assert_eq!(s, 200);
    assert_eq!(gone["active"], false, "uninstall is a logical delete");
    let (_, still) = app.admin("GET", &ppath, None).await;
    assert_eq!(still["active"], false);
    // A phone cannot be bound to an uninstalled portal.
    let (s, err) = app.admin("PATCH", &path, Some(json!({"portal": portal["id"]}))).await;
    assert_eq!(s, 422);
    assert_eq!(err["error"]["fields"][0]["field"], "portal");
    app.stop().await;
}

async fn validation_names_the_field(db: Db) {
    let app = TestApp::start(db).await;
    let (s, e) = app.admin("POST", "/apps", Some(json!({"domain": "https://x.com/"}))).await;
    assert_eq!(s, 422);
    let fields: Vec<&str> =
        e["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["meta_app_id", "domain", "app_secret"]);

    let (s, e) = app.admin("POST", "/apps", Some(json!({"meta_app_id": 12}))).await;
    assert_eq!(s, 422, "wrong type");
    assert_eq!(e["error"]["fields"][0]["field"], "meta_app_id");
    let (s, e) = app.admin("POST", "/apps", Some(json!({"meta_app_idd": "1"}))).await;
    assert_eq!(s, 422, "unknown field");
    assert_eq!(e["error"]["fields"][0]["field"], "meta_app_idd");
    let r = app
        .http
        .post(app.url("/admin/api/v1/apps"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "bad_request");

    let (_, w, _) = app.seed(SECRET).await;
    for (number, why) in [("11 93000 1234", "international"), ("+12", "valid"), ("", "required")] {
        let (s, e) = app
            .admin("POST", "/phones", Some(json!({"number": number, "phone_number_id": "99", "waba": w["id"]})))
            .await;
        assert_eq!(s, 422, "{number}: {e}");
        assert_eq!(e["error"]["fields"][0]["field"], "number");
        assert!(e["error"]["fields"][0]["message"].as_str().unwrap().contains(why), "{e}");
    }
    let (s, e) = app
        .admin("POST", "/phones", Some(json!({"number": "+442079460018", "phone_number_id": "1", "waba": 999})))
        .await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["fields"][0]["field"], "waba");

    // Duplicates: number (in another notation) and phone_number_id.
    let (s, e) = app
        .admin("POST", "/phones", Some(json!({"number": "+5511930001234", "phone_number_id": "555", "waba": w["id"]})))
        .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "number");
    let (s, e) = app
        .admin(
            "POST",
            "/phones",
            Some(json!({"number": "+442079460018", "phone_number_id": "106540352242922", "waba": w["id"]})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(e["error"]["fields"][0]["field"], "phone_number_id");
    let (s, e) = app
        .admin("POST", "/apps", Some(json!({"meta_app_id": "1234567890", "domain": "x.com", "app_secret": SECRET})))
        .await;
    assert_eq!(s, 409);
    assert_eq!(e["error"]["fields"][0]["field"], "meta_app_id");

    // Unknown ids.
    for path in ["/apps/999", "/wabas/999", "/phones/999", "/portals/999"] {
        let (s, e) = app.admin("GET", path, None).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(e["error"]["code"], "not_found");
    }
    app.stop().await;
}

async fn references_refuse_deletion(db: Db) {
    let app = TestApp::start(db).await;
    let (a, w, p) = app.seed(SECRET).await;
    let (s, e) = app.admin("DELETE", &format!("/apps/{}", a["id"]), None).await;
    assert_eq!(s, 409);
    assert!(e["error"]["message"].as_str().unwrap().contains("WABA"), "{e}");
    let (s, e) = app.admin("DELETE", &format!("/wabas/{}", w["id"]), None).await;
    assert_eq!(s, 409);
    assert!(e["error"]["message"].as_str().unwrap().contains("phone"), "{e}");
    assert_eq!(app.admin("DELETE", &format!("/phones/{}", p["id"]), None).await.0, 204);
    assert_eq!(app.admin("DELETE", &format!("/wabas/{}", w["id"]), None).await.0, 204);
    assert_eq!(app.admin("DELETE", &format!("/apps/{}", a["id"]), None).await.0, 204);
    assert_eq!(app.admin("GET", &format!("/apps/{}", a["id"]), None).await.0, 404);
    app.stop().await;
}

async fn patch_app_and_rotate_verify_token(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let path = format!("/apps/{}", a["id"]);
    let (s, b) =
        app.admin("PATCH", &path, Some(json!({"rotate_verify_token": true, "verify_signatures": false}))).await;
    assert_eq!(s, 200, "{b}");
    assert_ne!(b["verify_token"], a["verify_token"]);
    assert!(b["warnings"][0].as_str().unwrap().contains("OFF"), "loud warning while verification is off: {b}");
    let (s, e) = app.admin("PATCH", &path, Some(json!({"meta_app_id": "42"}))).await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["fields"][0]["field"], "meta_app_id");
    app.stop().await;
}

/// Secrets never appear in the database in clear, in any table.
async fn secrets_are_sealed_at_rest(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    app.admin(
        "POST",
        "/portals",
        Some(json!({"member_id": "m1", "domain": "acme.bitrix24.com", "client_endpoint": "https://acme.bitrix24.com/rest/",
                    "access_token": "PORTAL-ACCESS-SECRET-0001", "refresh_token": "PORTAL-REFRESH-SECRET-0002",
                    "application_token": "PORTAL-APP-TOKEN-SECRET-0003"})),
    )
    .await;
    let verify_token = a["verify_token"].as_str().unwrap().to_string();
    let secrets = [
        SECRET,
        "EAAG-system-user-token-0001",
        "PORTAL-ACCESS-SECRET-0001",
        "PORTAL-REFRESH-SECRET-0002",
        "PORTAL-APP-TOKEN-SECRET-0003",
        &verify_token,
        &app.token,
    ];
    let dump: Vec<u8> = match db {
        Db::Sqlite => {
            // Checkpoint nothing on purpose: read the main file and the WAL as they are on disk.
            let files = app.db.sqlite_files();
            assert!(!files.is_empty());
            files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect()
        }
        Db::Postgres => {
            let mut out = Vec::new();
            for table in ["meta_apps", "wabas", "phones", "portals", "settings"] {
                let rows = sqlx::query(&format!("SELECT CAST(row_to_json(t) AS TEXT) AS j FROM {table} t"))
                    .fetch_all(&app.svc.store.pool)
                    .await
                    .unwrap();
                for r in rows {
                    out.extend(sqlx::Row::get::<String, _>(&r, "j").into_bytes());
                }
            }
            assert!(!out.is_empty());
            out
        }
    };
    for s in secrets {
        assert!(
            !dump.windows(s.len()).any(|w| w == s.as_bytes()),
            "a secret ({}…) is readable in the raw database",
            &s[..4]
        );
    }
    // ...while the API shows them masked and the service can still use them.
    let (_, shown) = app.admin("GET", &format!("/apps/{}", a["id"]), None).await;
    assert_eq!(shown["app_secret"], "f00d…4242");
    let stored = app.svc.store.get_app(a["id"].as_i64().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.app_secret, SECRET);
    app.stop().await;
}

async fn restart_keeps_everything(db: Db) {
    let first = TestApp::start(db).await;
    let (a, _, p) = first.seed(SECRET).await;
    let token = first.token.clone();
    let TestApp { svc, db: testdb, .. } = first;
    svc.stop().await.unwrap();

    let config = testdb.config();
    let svc = wabridge::Service::start(config).await.unwrap();
    assert!(svc.new_admin_token.is_none(), "no second admin token on restart");
    let http = reqwest::Client::new();
    let app: Value = http
        .get(format!("{}/admin/api/v1/apps/{}", svc.url(), a["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["verify_token"], a["verify_token"]);
    assert_eq!(app["app_secret"], "f00d…4242");
    let phone: Value = http
        .get(format!("{}/admin/api/v1/phones/{}", svc.url(), p["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(phone["number"], "+5511930001234");
    svc.stop().await.unwrap();
    testdb.drop_db().await;
}

async fn health_metrics_openapi_and_limits(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["database"], "ok");
    app.admin("GET", "/apps", None).await;
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"wabridge_http_requests_total{route="/admin/api/v1/apps",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("wabridge_http_request_duration_seconds_bucket"), "{text}");

    let spec: Value = app.http.get(app.url("/admin/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/admin/api/v1/apps", "/admin/api/v1/phones/{id}", "/admin/api/v1/portals", "/admin/api/v1/jobs"] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    assert!(spec["components"]["schemas"]["PhoneInput"].is_object());

    // Body limit: 1 MiB by default on the admin API, answered as JSON.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = app
        .http
        .post(app.url("/admin/api/v1/apps"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "payload_too_large");
    // A fresh client: the server closes the connection that carried the refused body, and a pooled client may
    // try to reuse it.
    let r = reqwest::Client::new().get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    app.stop().await;
}

/// A registry change made from a copy loaded before an activation finished must not undo the activation.
async fn registry_updates_keep_calling_state(db: Db) {
    let app = TestApp::start(db).await;
    let (_, _, p) = app.seed(SECRET).await;
    let store = &app.svc.store;
    let id = p["id"].as_i64().unwrap();
    let stale = store.get_phone(id).await.unwrap().unwrap();
    let mut activated = stale.clone();
    activated.calling_enabled = true;
    activated.calling_status = Some("ENABLED".into());
    activated.sip_password = Some("meta-generated-sip-password".into());
    store.update_phone_calling(&activated).await.unwrap();
    let mut patched = stale;
    patched.sms_service = true;
    store.update_phone(&patched).await.unwrap();
    let now = store.get_phone(id).await.unwrap().unwrap();
    assert!(now.sms_service, "the registry change is applied");
    assert!(now.calling_enabled && now.calling_status.as_deref() == Some("ENABLED"), "calling state kept");
    assert_eq!(now.sip_password.as_deref(), Some("meta-generated-sip-password"));
    // And through the admin API as well.
    let (s, view) = app.admin("PATCH", &format!("/phones/{id}"), Some(json!({"file_proxy": true}))).await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["calling"]["enabled"], true);
    assert_eq!(view["calling"]["sip_password"], "meta…word");
    app.stop().await;
}

both_databases!(
    registry_updates_keep_calling_state,
    admin_token_is_required,
    create_app_waba_phone_portal,
    validation_names_the_field,
    references_refuse_deletion,
    patch_app_and_rotate_verify_token,
    secrets_are_sealed_at_rest,
    restart_keeps_everything,
    health_metrics_openapi_and_limits,
);
