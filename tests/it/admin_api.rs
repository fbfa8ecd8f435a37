//! Foundation, end to end over real HTTP on both databases: admin token, registry CRUD, validation,
//! conflicts, references, secrets sealed and masked, restart keeps everything, health and metrics.

use crate::common;

use common::{Db, TestApp};
use reqwest::Method;
use serde_json::{json, Map, Value};

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
    let (s, e) = app
        .admin("POST", "/apps", Some(json!({"meta_app_id": "", "domain": "https://x.com/", "app_secret": " "})))
        .await;
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
                    .fetch_all(app.svc.store.raw_pool())
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
    let revealed: Value = http
        .get(format!("{}/admin/api/v1/apps/{}/verify-token", svc.url(), a["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revealed["verify_token"], a["verify_token"]);
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

// ---- Every error is JSON that names the field (issue 11, "Hardening").

/// Asserts an answer is an error in the documented JSON shape
/// (`{"error": {"code", "message", "fields": [{"field", "message"}]}}`); returns its status and body.
async fn json_error(resp: reqwest::Response, what: &str) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let text = resp.text().await.unwrap();
    assert!(status >= 400, "{what}: expected an error, got {status}: {text}");
    assert!(ct.starts_with("application/json"), "{what}: {status} answered as {ct:?}: {text:?}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let err = &body["error"];
    assert!(err["code"].is_string() && err["message"].is_string(), "{what}: not the error shape: {body}");
    if let Some(fields) = err.get("fields") {
        let ok = fields
            .as_array()
            .is_some_and(|f| !f.is_empty() && f.iter().all(|f| f["field"].is_string() && f["message"].is_string()));
        assert!(ok, "{what}: fields not [{{field, message}}]: {body}");
    }
    (status, body)
}

fn field0(body: &Value) -> &str {
    body["error"]["fields"][0]["field"].as_str().unwrap_or("<no field>")
}

async fn api_key(app: &TestApp) -> String {
    let (s, k) = app.admin("POST", "/api-keys", Some(json!({"name": "shop"}))).await;
    assert_eq!(s, 201, "{k}");
    k["key"].as_str().unwrap().to_string()
}

/// The credential a path takes: an API key for the tenant API, the admin token for everything else.
fn credential<'a>(app: &'a TestApp, key: &'a str, path: &str) -> &'a str {
    if path.starts_with("/api/v1/") {
        key
    } else {
        &app.token
    }
}

async fn malformed_requests_are_json(db: Db) {
    let app = TestApp::start(db).await;
    let (_, _, p) = app.seed(SECRET).await;
    let key = api_key(&app).await;
    let h = &app.http;
    let admin = |m: Method, path: &str| h.request(m, app.url(&format!("/admin/api/v1{path}"))).bearer_auth(&app.token);

    // Path ids that are not integers: 400 naming `id` (was 400 text/plain "Invalid URL: Cannot parse ...").
    for (m, path) in [
        (Method::GET, "/apps/abc"),
        (Method::PATCH, "/wabas/abc"),
        (Method::DELETE, "/phones/1.5"),
        (Method::GET, "/portals/-1x"),
        (Method::GET, "/phones/abc/calling"),
        (Method::POST, "/jobs/x/redrive"),
        (Method::DELETE, "/api-keys/ab"),
        (Method::GET, "/wabas/abc/templates"),
        (Method::GET, "/sends/99999999999999999999"),
    ] {
        let req = admin(m.clone(), path).json(&json!({}));
        let (s, e) = json_error(req.send().await.unwrap(), path).await;
        assert_eq!((s, field0(&e)), (400, "id"), "{m} {path}: {e}");
    }
    let r = h.get(app.url("/api/v1/sends/abc")).bearer_auth(&key).send().await.unwrap();
    let (s, e) = json_error(r, "tenant send").await;
    assert_eq!((s, field0(&e)), (400, "id"), "{e}");

    // Media links: a bad phone id, a missing or non-numeric exp, a missing sig.
    let pid = &p["id"];
    for (path, status, field) in [
        ("/media/abc/wamid1?exp=1&sig=x".to_string(), 400, "phone"),
        (format!("/media/{pid}/wamid1?sig=x"), 422, "exp"),
        (format!("/media/{pid}/wamid1?exp=soon&sig=x"), 422, "exp"),
        (format!("/media/{pid}/wamid1?exp=1"), 422, "sig"),
    ] {
        let (s, e) = json_error(h.get(app.url(&path)).send().await.unwrap(), &path).await;
        assert_eq!((s, field0(&e)), (status, field), "{path}: {e}");
    }

    // Query strings of list endpoints.
    for (path, field) in [
        ("/calls?limit=abc", "limit"),
        ("/calls?phone=x", "phone"),
        ("/calls?answered=maybe", "answered"),
        ("/calls?nosuch=1", "nosuch"),
        ("/jobs?limit=abc", "limit"),
        ("/jobs?state=zombie", "state"),
    ] {
        let (s, e) = json_error(admin(Method::GET, path).send().await.unwrap(), path).await;
        assert_eq!((s, field0(&e)), (422, field), "{path}: {e}");
    }

    // A JSON body without `Content-Type: application/json` is 415.
    let body = json!({"meta_app_id": "42", "domain": "x.example.com", "app_secret": SECRET}).to_string();
    let (s, e) = json_error(admin(Method::POST, "/apps").body(body.clone()).send().await.unwrap(), "no type").await;
    assert_eq!((s, e["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{e}");
    let r = admin(Method::POST, "/apps").header("content-type", "text/plain").body(body).send().await.unwrap();
    assert_eq!(json_error(r, "text/plain").await.0, 415);
    let r = h.post(app.url("/api/v1/notifications")).bearer_auth(&key).body("{}").send().await.unwrap();
    assert_eq!(json_error(r, "tenant without a type").await.0, 415);

    // Too large is 413, also on the routes that read their body themselves (Bitrix24's).
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    for path in ["/api/v1/notifications", "/api/sms/abc", "/api/bitrix/events", "/api/bitrix/install"] {
        // A fresh client each time: the server closes a connection whose body it refused.
        let req = reqwest::Client::new()
            .post(app.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(big.clone());
        let (s, e) = json_error(req.send().await.unwrap(), path).await;
        assert_eq!((s, e["error"]["code"].as_str()), (413, Some("payload_too_large")), "{path}: {e}");
    }

    // A method a route does not have is 405, with `Allow`.
    for (m, path) in [
        (Method::PUT, "/admin/api/v1/apps"),
        (Method::POST, "/admin/api/v1/apps/1"),
        (Method::DELETE, "/api/v1/notifications"),
        (Method::POST, "/healthz"),
        (Method::GET, "/api/sms/x"),
        (Method::PUT, "/media/1/m"),
        (Method::DELETE, "/admin/api/v1/openapi.json"),
    ] {
        let req = reqwest::Client::new().request(m.clone(), app.url(path)).bearer_auth(credential(&app, &key, path));
        let r = req.send().await.unwrap();
        let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let (s, e) = json_error(r, path).await;
        assert_eq!((s, e["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{m} {path}: {e}");
        assert!(allow.is_some_and(|a| !a.is_empty()), "{m} {path}: Allow kept");
    }
    app.stop().await;
}

/// Every (path, method, operation) of the OpenAPI document, path-level parameters merged into the operation's.
fn operations(doc: &Value) -> Vec<(String, Method, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for (m, op) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(m.to_ascii_uppercase().as_bytes()) else { continue };
            if !["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&m.as_str()) {
                continue;
            }
            let mut op = op.clone();
            let mut params = shared.clone();
            params.extend(op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default());
            op["parameters"] = Value::Array(params.iter().map(|p| resolve(doc, p).clone()).collect());
            out.push((path.clone(), method, op));
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            resolve(doc, doc.pointer(target).unwrap_or_else(|| panic!("$ref {r} does not resolve")))
        }
        None => v,
    }
}

fn params_in<'a>(op: &'a Value, place: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    op["parameters"].as_array().into_iter().flatten().filter(move |p| p["in"] == place)
}

fn is_integer(doc: &Value, schema: &Value) -> bool {
    let s = resolve(doc, schema);
    s["type"] == "integer" || s["type"].as_array().is_some_and(|t| t.contains(&json!("integer")))
}

async fn fetch_openapi(app: &TestApp) -> Value {
    let r = app.http.get(app.url("/admin/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Sweeps every operation of the OpenAPI document with malformed requests: a non-integer for each integer path
/// parameter and query parameter, a body without the JSON content type, broken JSON, a body over the limit, and a
/// method the path does not have. Every answer must be a JSON error of the documented shape naming the parameter.
async fn every_documented_route_answers_malformed_requests_with_json(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let key = api_key(&app).await;
    let doc = fetch_openapi(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "the sweep covers the document ({} operations)", ops.len());
    // Each answer is also checked against the document's own ErrorBody schema, the `default` response of every
    // operation (OpenAPI 3.1 schemas are JSON Schema 2020-12).
    for (path, method, op) in &ops {
        let default = &op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(default, "#/components/schemas/ErrorBody", "{method} {path}: default response");
    }
    let error_schema = jsonschema::validator_for(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/ErrorBody",
        "components": doc["components"],
    }))
    .expect("ErrorBody compiles");
    assert!(!error_schema.is_valid(&json!({"error": {"code": 1}})), "the ErrorBody check is not vacuous");
    let documented = |e: &Value, what: &str| {
        let errors: Vec<String> = error_schema.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{what}: {e} does not match ErrorBody: {errors:?}");
    };
    let mut checked = 0;
    for (path, method, op) in &ops {
        let cred = credential(&app, &key, path);
        let fill = |bad: Option<&str>| {
            let mut p = path.clone();
            for param in params_in(op, "path") {
                let name = param["name"].as_str().unwrap();
                let v = if Some(name) == bad { "abc" } else { "1" };
                p = p.replace(&format!("{{{name}}}"), v);
            }
            p
        };
        let has_body = op.get("requestBody").is_some();
        let request = |url: &str| {
            let req = reqwest::Client::new().request(method.clone(), app.url(url)).bearer_auth(cred);
            if has_body {
                req.json(&json!({}))
            } else {
                req
            }
        };
        let what = |how: &str| format!("{method} {path} ({how})");
        for param in params_in(op, "path").filter(|p| is_integer(&doc, &p["schema"])) {
            let name = param["name"].as_str().unwrap();
            let (s, e) = json_error(request(&fill(Some(name))).send().await.unwrap(), &what(name)).await;
            assert_eq!((s, field0(&e)), (400, name), "{}: {e}", what(name));
            documented(&e, &what(name));
            checked += 1;
        }
        for param in params_in(op, "query").filter(|p| is_integer(&doc, &p["schema"])) {
            let name = param["name"].as_str().unwrap();
            let url = format!("{}?{name}=abc", fill(None));
            let (s, e) = json_error(request(&url).send().await.unwrap(), &what(&url)).await;
            assert_eq!((s, field0(&e)), (422, name), "{}: {e}", what(&url));
            documented(&e, &what(&url));
            checked += 1;
        }
        let multipart = op["requestBody"]["content"].get("multipart/form-data").is_some();
        if multipart {
            // A form upload: anything but multipart/form-data is 415.
            let send = |ct: Option<&str>| {
                let mut req = reqwest::Client::new().request(method.clone(), app.url(&fill(None))).bearer_auth(cred);
                if let Some(ct) = ct {
                    req = req.header("content-type", ct);
                }
                req.body("{}")
            };
            for ct in [None, Some("text/plain"), Some("application/json")] {
                let (s, e) = json_error(send(ct).send().await.unwrap(), &what("not a form")).await;
                assert_eq!(s, 415, "{} {ct:?}", what("not a form"));
                documented(&e, &what("not a form"));
                checked += 1;
            }
        } else if has_body {
            let send = |ct: Option<&str>, body: String| {
                let mut req = reqwest::Client::new().request(method.clone(), app.url(&fill(None))).bearer_auth(cred);
                if let Some(ct) = ct {
                    req = req.header("content-type", ct);
                }
                req.body(body)
            };
            let (s, e) = json_error(send(None, "{}".into()).send().await.unwrap(), &what("no type")).await;
            assert_eq!(s, 415, "{}", what("no content type"));
            documented(&e, &what("no content type"));
            let (s, _) = json_error(send(Some("text/plain"), "{}".into()).send().await.unwrap(), &what("text")).await;
            assert_eq!(s, 415, "{}", what("text/plain"));
            let (s, _) = json_error(send(Some("application/json"), "{".into()).send().await.unwrap(), &what("{")).await;
            assert_eq!(s, 400, "{}", what("broken JSON"));
            let big = format!("{{\"x\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
            let (s, _) = json_error(send(Some("application/json"), big).send().await.unwrap(), &what("big")).await;
            assert_eq!(s, 413, "{}", what("too large"));
            checked += 4;
        }
    }
    // A method each path does not have.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(m) = ["put", "patch", "delete", "post"].into_iter().find(|m| item.get(*m).is_none()) else { continue };
        let url = path.replace("{id}", "1");
        let req = reqwest::Client::new()
            .request(Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(), app.url(&url))
            .bearer_auth(credential(&app, &key, path));
        let (s, e) = json_error(req.send().await.unwrap(), &format!("{m} {path}")).await;
        assert_eq!(s, 405, "{m} {path}: {e}");
        documented(&e, &format!("{m} {path}"));
        checked += 1;
    }
    assert!(checked >= 60, "{checked} malformed requests checked");
    app.stop().await;
}

/// serde's "missing field" names the field (was `{"field": "body", "message": "missing field `from`"}`).
async fn missing_fields_are_named(db: Db) {
    let app = TestApp::start(db).await;
    let key = api_key(&app).await;
    for (path, body, field) in [
        ("/apps", json!({"domain": "wb.example.com", "app_secret": SECRET}), "meta_app_id"),
        ("/apps", json!({"meta_app_id": "1", "app_secret": SECRET}), "domain"),
        ("/wabas", json!({"waba_id": "1"}), "app"),
        ("/phones", json!({"number": "+442079460018", "waba": 1}), "phone_number_id"),
        ("/portals", json!({"member_id": "m", "domain": "a.bitrix24.com"}), "client_endpoint"),
        ("/api-keys", json!({}), "name"),
        ("/phones/1/calling", json!({"sip_host": "sip.example.com"}), "enabled"),
    ] {
        let (s, e) = app.admin("POST", path, Some(body)).await;
        assert_eq!(s, 422, "{path}: {e}");
        assert_eq!(e["error"]["fields"][0], json!({"field": field, "message": "is required"}), "{path}: {e}");
        assert_eq!(e["error"]["fields"].as_array().unwrap().len(), 1);
    }
    let notify = |body: Value| app.http.post(app.url("/api/v1/notifications")).bearer_auth(&key).json(&body).send();
    let (s, e) = json_error(notify(json!({"to": "+5511987654321", "template": "t"})).await.unwrap(), "no from").await;
    assert_eq!((s, field0(&e)), (422, "from"), "{e}");
    assert_eq!(e["error"]["fields"][0]["message"], "is required");
    // Wrong types and unknown fields are named by their path too.
    let base = json!({"from": "+5511930001234", "to": "+5511987654321", "template": "t"});
    for (extra, field) in [
        (json!({"parameters": [["nested"]]}), "parameters"),
        (json!({"parameters": 7}), "parameters"),
        (json!({"locale": 5}), "locale"),
        (json!({"header": "x"}), "header"),
    ] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (s, e) = json_error(notify(body).await.unwrap(), field).await;
        assert_eq!((s, field0(&e)), (422, field), "{e}");
        if field == "parameters" {
            let m = e["error"]["fields"][0]["message"].as_str().unwrap();
            assert!(m.contains("a list of values or an object of named values"), "{m}");
        }
    }
    app.stop().await;
}

/// The OpenAPI document is valid by the official OpenAPI 3.1 JSON Schema (vendored from spec.openapis.org, see
/// tests/fixtures/README.md), every `$ref` resolves, path parameters match the path templates, and tenant
/// operations name the API-key scheme.
async fn openapi_document_is_valid(db: Db) {
    let app = TestApp::start(db).await;
    let doc = fetch_openapi(&app).await;
    let schema: Value = serde_json::from_str(include_str!("../fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).take(20).collect();
    assert!(errors.is_empty(), "the OpenAPI document is invalid:\n{}", errors.join("\n"));
    // The validator is not vacuous: a path parameter that is not required is refused.
    let mut broken = doc.clone();
    broken["paths"]["/admin/api/v1/apps/{id}"]["get"]["parameters"][0]["required"] = json!(false);
    assert!(!validator.is_valid(&broken), "the validator catches an optional path parameter");

    // Every $ref resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{} refs", all.len());
    for r in all {
        assert!(r.starts_with("#/") && doc.pointer(&r[1..]).is_some(), "$ref {r} does not resolve");
    }

    // Path parameters: every {name} of a template is declared `in: path`, and nothing else is.
    for (path, method, op) in operations(&doc) {
        let mut in_template: Vec<&str> = path.split('{').skip(1).filter_map(|s| s.split('}').next()).collect();
        let mut declared: Vec<&str> = params_in(&op, "path").map(|p| p["name"].as_str().unwrap()).collect();
        in_template.sort_unstable();
        declared.sort_unstable();
        assert_eq!(in_template, declared, "{method} {path}: path parameters");
    }
    // The list filters are query parameters, all optional.
    for path in ["/admin/api/v1/calls", "/admin/api/v1/jobs"] {
        let op = operations(&doc).into_iter().find(|(p, _, _)| p == path).unwrap().2;
        let q: Vec<&Value> = params_in(&op, "query").collect();
        assert!(q.len() >= 2 && q.iter().all(|p| p["required"] != true), "{path}: {op}");
        assert!(q.iter().any(|p| p["name"] == "limit"), "{path}");
    }
    assert!(doc["components"]["schemas"]["JobState"].is_object(), "JobState is defined");

    // Security: the admin token by default; API keys on the tenant API; nothing on the health probes.
    let schemes = &doc["components"]["securitySchemes"];
    for s in ["admin_token", "api_key"] {
        assert_eq!(schemes[s]["type"], "http", "{s}");
        assert_eq!(schemes[s]["scheme"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"), "{s}");
    }
    assert_eq!(doc["security"], json!([{"admin_token": []}]));
    for (path, method, op) in operations(&doc) {
        let expected = if path.starts_with("/api/v1/") {
            json!([{"api_key": []}])
        } else if path == "/healthz" || path == "/readyz" {
            json!([])
        } else {
            Value::Null // inherits the document's admin_token
        };
        assert_eq!(op["security"], expected, "{method} {path}");
    }

    // Create bodies list what they need; the notification's parameters are a list or an object.
    for (schema, required) in [
        ("AppCreate", vec!["meta_app_id", "domain", "app_secret"]),
        ("WabaCreate", vec!["waba_id", "app"]),
        ("PhoneCreate", vec!["number", "phone_number_id", "waba"]),
        ("PortalCreate", vec!["member_id", "domain", "client_endpoint"]),
        ("ApiKeyInput", vec!["name"]),
        ("CallingInput", vec!["enabled"]),
        ("NotificationInput", vec!["from", "to", "template"]),
    ] {
        let mut listed: Vec<&str> = doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} lists no required fields"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        let mut required = required;
        required.sort_unstable();
        assert_eq!(listed, required, "{schema}");
    }
    fn kinds(doc: &Value, s: &Value, out: &mut Vec<String>) {
        let s = resolve(doc, s);
        match s.get("oneOf").and_then(Value::as_array) {
            Some(alts) => alts.iter().for_each(|a| kinds(doc, a, out)),
            None => out.push(s["type"].as_str().unwrap_or("?").to_string()),
        }
    }
    let mut found = Vec::new();
    kinds(&doc, &doc["components"]["schemas"]["NotificationInput"]["properties"]["parameters"], &mut found);
    found.sort_unstable();
    assert_eq!(found, ["array", "null", "object"], "parameters: a list, an object of named values, or null");
    app.stop().await;
}

/// A value of the type a schema asks for (enough for serde to take it).
fn example(doc: &Value, schema: &Value) -> Value {
    let s = resolve(doc, schema);
    let ty = match &s["type"] {
        Value::Array(t) => t.iter().find(|t| *t != "null").cloned().unwrap_or(Value::Null),
        t => t.clone(),
    };
    match ty.as_str() {
        _ if s["enum"].is_array() => s["enum"][0].clone(),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => json!("x"),
    }
}

/// What the document says is required is what the server refuses without: for every operation with a body,
/// leaving out any one required field is a 422 naming that field, `{}` is a 422 naming a required field, and
/// a body of just the required fields is not refused for a missing one.
async fn documented_required_fields_are_refused(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let key = api_key(&app).await;
    let doc = fetch_openapi(&app).await;
    let mut with_required = 0;
    for (path, method, op) in operations(&doc) {
        let Some(body) = op.get("requestBody") else { continue };
        let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let url = params_in(&op, "path")
            .fold(path.clone(), |p, param| p.replace(&format!("{{{}}}", param["name"].as_str().unwrap()), "1"));
        let cred = credential(&app, &key, &path).to_string();
        let send = |body: Value| {
            let req = app.http.request(method.clone(), app.url(&url)).bearer_auth(&cred).json(&body);
            async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let refused_as_missing = |e: &Value| -> Vec<String> {
            e["error"]["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["message"] == "is required")
                .map(|f| f["field"].as_str().unwrap().to_string())
                .collect()
        };
        let (s, e) = send(json!({})).await;
        if required.is_empty() {
            assert!(refused_as_missing(&e).is_empty(), "{method} {path}: {{}} refused for a missing field: {e}");
            continue;
        }
        with_required += 1;
        assert_eq!(s, 422, "{method} {path}: {{}}: {e}");
        assert!(required.contains(&field0(&e).to_string()), "{method} {path}: {{}} names {}: {e}", field0(&e));
        let minimal: Map<String, Value> =
            required.iter().map(|f| (f.clone(), example(&doc, &schema["properties"][f]))).collect();
        for f in &required {
            let mut b = minimal.clone();
            b.remove(f);
            let (s, e) = send(Value::Object(b)).await;
            assert_eq!((s, field0(&e)), (422, f.as_str()), "{method} {path} without {f}: {e}");
        }
        let (_, e) = send(Value::Object(minimal)).await;
        assert!(refused_as_missing(&e).is_empty(), "{method} {path}: the required fields are not enough: {e}");
    }
    assert!(with_required >= 7, "{with_required} operations with required fields");
    app.stop().await;
}

/// The verify token is shown in full when the app is created, when it is rotated, and on the explicit reveal
/// endpoint; masked in lists and reads.
async fn verify_token_is_shown_once_then_masked(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let full = a["verify_token"].as_str().unwrap().to_string();
    assert!(full.len() >= 32 && !full.contains('…'), "in full at creation: {a}");
    let masked = format!("{}…{}", &full[..4], &full[full.len() - 4..]);
    let path = format!("/apps/{}", a["id"]);
    assert_eq!(app.admin("GET", &path, None).await.1["verify_token"], masked.as_str());
    assert_eq!(app.admin("GET", "/apps", None).await.1[0]["verify_token"], masked.as_str());
    let (_, patched) = app.admin("PATCH", &path, Some(json!({"name": "shop"}))).await;
    assert_eq!(patched["verify_token"], masked.as_str());
    let (s, revealed) = app.admin("GET", &format!("{path}/verify-token"), None).await;
    assert_eq!(s, 200, "{revealed}");
    assert_eq!(revealed["verify_token"], full.as_str());
    assert_eq!(revealed["webhook_urls"], a["webhook_urls"]);
    let (s, rotated) = app.admin("PATCH", &path, Some(json!({"rotate_verify_token": true}))).await;
    assert_eq!(s, 200);
    let new = rotated["verify_token"].as_str().unwrap();
    assert!(new.len() >= 32 && !new.contains('…') && new != full, "the new token in full: {rotated}");
    assert_eq!(app.admin("GET", &format!("{path}/verify-token"), None).await.1["verify_token"], new);
    // The reveal endpoint is behind the admin token like the rest.
    let r = app.http.get(app.url(&format!("/admin/api/v1{path}/verify-token"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.admin("GET", "/apps/999/verify-token", None).await.0, 404);
    app.stop().await;
}

/// The getting-started guide's `curl` example is accepted as written (its body posted as it stands in the doc).
async fn the_getting_started_example_is_accepted(db: Db) {
    let doc = include_str!("../../docs/getting-started.md");
    let start = doc.find("-d '{\"meta_app_id\"").expect("the example in docs/getting-started.md") + 4;
    let body: Value = serde_json::from_str(&doc[start..start + doc[start..].find("}'").unwrap() + 1]).unwrap();
    let app = TestApp::start(db).await;
    let (status, answer) = app.admin("POST", "/apps", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["meta_app_id"], "1234567890");
    app.stop().await;
}

both_databases!(
    the_getting_started_example_is_accepted,
    malformed_requests_are_json,
    every_documented_route_answers_malformed_requests_with_json,
    missing_fields_are_named,
    openapi_document_is_valid,
    documented_required_fields_are_refused,
    verify_token_is_shown_once_then_masked,
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
