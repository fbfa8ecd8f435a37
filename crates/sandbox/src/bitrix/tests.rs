use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::*;
use crate::form;

async fn sandbox() -> BitrixSandbox {
    BitrixSandbox::start(BitrixOptions::default()).await.unwrap()
}

async fn call_token(sb: &BitrixSandbox, method: &str, token: &str, mut params: Value) -> (u16, Value) {
    params["auth"] = json!(token);
    let r =
        reqwest::Client::new().post(format!("{}{method}", sb.client_endpoint())).json(&params).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn call(sb: &BitrixSandbox, method: &str, params: Value) -> (u16, Value) {
    call_token(sb, method, &sb.current_access_token(), params).await
}

async fn call_form(sb: &BitrixSandbox, method: &str, body: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{method}", sb.client_endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn refresh(sb: &BitrixSandbox, refresh_token: &str) -> (u16, Value) {
    let o = sb.options();
    let r = reqwest::Client::new()
        .get(format!("{}/oauth/token/", sb.oauth_url()))
        .query(&[
            ("grant_type", "refresh_token"),
            ("client_id", o.client_id.as_str()),
            ("client_secret", o.client_secret.as_str()),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// (content type, body) of every request received.
type Log = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny app endpoint recording what the portal posts.
struct Receiver {
    url: String,
    got: Log,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Receiver {
        type St = (Log, Arc<AtomicU16>);
        async fn take(State((got, status)): State<St>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            got.lock().unwrap().push((ct, body.to_vec()));
            StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let app = Router::new().route("/{*path}", post(take)).with_state((got.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, status }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn raw(&self) -> Vec<(String, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<Value> {
        self.raw().iter().map(|(ct, b)| form::parse(Some(ct), b).unwrap()).collect()
    }
}

#[tokio::test]
async fn tokens_expire_refresh_rotates_the_pair_and_old_refresh_tokens_are_refused() {
    let sb = sandbox().await;
    let (status, v) = call(&sb, "app.info", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["INSTALLED"], true);
    assert!(v["time"]["start"].is_f64() && v["time"]["date_start"].is_string(), "{v}");

    // auth in the query string and the .json suffix work too.
    let url = format!("{}app.info.json?auth={}", sb.client_endpoint(), sb.current_access_token());
    assert_eq!(reqwest::Client::new().post(url).send().await.unwrap().status(), 200);

    let (status, v) = call_token(&sb, "app.info", "nonsense", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("NO_AUTH_FOUND")));

    let old_access = sb.current_access_token();
    let old_refresh = sb.current_refresh_token();
    sb.expire_access_tokens();
    let (status, v) = call(&sb, "app.info", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("expired_token")), "{v}");
    assert!(v["error_description"].is_string());

    let (status, t) = refresh(&sb, &old_refresh).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["domain"], "oauth.bitrix.info");
    assert_eq!(t["client_endpoint"], sb.client_endpoint());
    assert_eq!(t["member_id"], sb.member_id());
    assert_eq!(t["expires_in"], 3600);
    for k in ["expires", "server_endpoint", "scope", "status", "user_id"] {
        assert!(!t[k].is_null(), "{k} missing in {t}");
    }
    let access = t["access_token"].as_str().unwrap();
    let new_refresh = t["refresh_token"].as_str().unwrap();
    assert_ne!(access, old_access);
    assert_ne!(new_refresh, old_refresh);
    assert_eq!(sb.current_access_token(), access);
    assert_eq!(sb.current_refresh_token(), new_refresh);
    assert_eq!(call_token(&sb, "app.info", access, json!({})).await.0, 200);
    assert_eq!(call_token(&sb, "app.info", &old_access, json!({})).await.0, 401);

    // The spent refresh token is refused and counted.
    let (status, v) = refresh(&sb, &old_refresh).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    sb.set_invalid_grant_status(401);
    assert_eq!(refresh(&sb, "never-issued").await.0, 401);
    assert_eq!(sb.refresh_count(), 1);
    assert_eq!(sb.double_spent_refresh(), 1);

    // A wrong secret is invalid_client.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/oauth/token/?grant_type=refresh_token&client_id=x&client_secret=y&refresh_token={new_refresh}",
            sb.oauth_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // …and did not spend the token.
    assert_eq!(refresh(&sb, new_refresh).await.0, 200);
}

#[tokio::test]
async fn the_leaky_bucket_and_forced_faults_answer_the_documented_errors() {
    let opts = BitrixOptions { rate_drain_per_sec: 0.0, ..BitrixOptions::default() };
    let sb = BitrixSandbox::start(opts).await.unwrap();
    for i in 0..50 {
        assert_eq!(call(&sb, "app.info", json!({})).await.0, 200, "call {i}");
    }
    let (status, v) = call(&sb, "app.info", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (503, Some("QUERY_LIMIT_EXCEEDED")));

    sb.set_rate_limit(1000.0, 50.0);
    sb.force_query_limit(2);
    assert_eq!(call(&sb, "app.info", json!({})).await.0, 503);
    assert_eq!(call(&sb, "app.info", json!({})).await.0, 503);
    assert_eq!(call(&sb, "app.info", json!({})).await.0, 200);

    sb.force_operation_time_limit("event.get", 1);
    let (status, v) = call(&sb, "event.get", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (429, Some("OPERATION_TIME_LIMIT")));
    assert_eq!(call(&sb, "app.info", json!({})).await.0, 200);
    assert_eq!(call(&sb, "event.get", json!({})).await.0, 200);

    sb.set_down(true);
    let (status, v) = call(&sb, "app.info", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (500, Some("INTERNAL_SERVER_ERROR")));
    sb.set_down(false);
    let (status, v) = call(&sb, "no.such.method", json!({})).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("ERROR_METHOD_NOT_FOUND")));
    assert!(sb.calls().iter().any(|c| c.method == "no.such.method" && c.http_status == 404));
}

async fn set_up_line(sb: &BitrixSandbox, app: &Receiver) -> u64 {
    let (status, v) = call(
        sb,
        "imconnector.register",
        json!({"ID": "WAbridge_WA", "NAME": "WhatsApp", "ICON": {"DATA_IMAGE": "data:image/svg+xml,x"},
               "PLACEMENT_HANDLER": app.url("/api/bitrix/placement")}),
    )
    .await;
    assert_eq!((status, &v["result"]), (200, &json!({"result": true})));
    let (status, _) =
        call(sb, "event.bind", json!({"event": "OnImConnectorMessageAdd", "handler": app.url("/api/bitrix/events")}))
            .await;
    assert_eq!(status, 200);
    for event in ["OnImConnectorStatusDelete", "OnImConnectorLineDelete"] {
        assert_eq!(
            call(sb, "event.bind", json!({"event": event, "handler": app.url("/api/bitrix/events")})).await.0,
            200
        );
    }
    let (_, v) =
        call(sb, "imopenlines.config.add", json!({"PARAMS": {"LINE_NAME": "wabridge_4915112345", "ACTIVE": "Y"}}))
            .await;
    v["result"].as_u64().unwrap()
}

#[tokio::test]
async fn connector_setup_send_messages_and_operator_replies() {
    let sb = sandbox().await;
    let app = Receiver::start().await;

    // Register failures are HTTP 200 with result.result=false.
    let (status, v) =
        call(&sb, "imconnector.register", json!({"ID": "x", "NAME": "n", "PLACEMENT_HANDLER": "https://a.example"}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["result"], false);
    assert_eq!(v["result"]["error"], "ICON_REQUIRED");

    let line = set_up_line(&sb, &app).await;
    assert_eq!(sb.connectors()[0].id, "wabridge_wa");
    let events: Vec<String> = sb.bound_events().iter().map(|b| b.event.clone()).collect();
    assert!(events.contains(&"ONIMCONNECTORMESSAGEADD".to_string()), "{events:?}");
    let (status, v) =
        call(&sb, "event.bind", json!({"event": "ONIMCONNECTORMESSAGEADD", "handler": app.url("/api/bitrix/events")}))
            .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("ERROR_HANDLER_ALREADY_EXIST")));
    let (_, v) = call(&sb, "event.get", json!({})).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 3);

    let (_, v) = call(
        &sb,
        "imopenlines.config.list.get",
        json!({"PARAMS": {"filter": {"LINE_NAME": "wabridge_4915112345"}, "select": ["ID", "LINE_NAME"]}}),
    )
    .await;
    assert_eq!(v["result"], json!([{"ID": line.to_string(), "LINE_NAME": "wabridge_4915112345"}]));

    let message = |text: &str, user: &str| {
        json!({"CONNECTOR": "wabridge_wa", "LINE": line, "MESSAGES": [{
            "user": {"id": user, "name": "Ana", "phone": format!("+{user}")},
            "message": {"id": format!("wamid.{text}"), "date": 1_773_759_161, "text": text},
            "chat": {"id": user}}]})
    };
    // Not active yet.
    let (status, v) = call(&sb, "imconnector.send.messages", message("hi", "4917000001")).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("NOT_ACTIVE_LINE")), "{v}");

    let (_, v) =
        call(&sb, "imconnector.activate", json!({"CONNECTOR": "wabridge_wa", "LINE": line, "ACTIVE": 1})).await;
    assert_eq!(v["result"], true);
    let data = json!({"ID": "4915112345", "URL": "https://wa.me/4915112345", "URL_IM": "https://wa.me/4915112345", "NAME": "WA"});
    let (_, v) =
        call(&sb, "imconnector.connector.data.set", json!({"CONNECTOR": "wabridge_wa", "LINE": line, "DATA": data}))
            .await;
    assert_eq!(v["result"], true);
    let (_, v) = call(&sb, "imconnector.status", json!({"CONNECTOR": "wabridge_wa", "LINE": line})).await;
    assert_eq!(v["result"]["STATUS"], true);
    assert_eq!(v["result"]["CONFIGURED"], true);
    assert_eq!(sb.connector_data(line), Some(data));

    let (status, v) = call(&sb, "imconnector.send.messages", message("hi", "4917000001")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["SUCCESS"], true);
    let r = &v["result"]["DATA"]["RESULT"][0];
    assert_eq!(r["SUCCESS"], true);
    let chat_id = r["session"]["CHAT_ID"].as_u64().unwrap();
    assert!(r["session"]["ID"].as_u64().is_some() && r["user"].is_string(), "{r}");
    // Same (connector, line, chat, user): same chat; another client: another chat.
    let (_, v) = call(&sb, "imconnector.send.messages", message("again", "4917000001")).await;
    assert_eq!(v["result"]["DATA"]["RESULT"][0]["session"]["CHAT_ID"], chat_id);
    let (_, v) = call(&sb, "imconnector.send.messages", message("other", "4917000002")).await;
    assert_ne!(v["result"]["DATA"]["RESULT"][0]["session"]["CHAT_ID"], chat_id);
    let messages = sb.chat_messages();
    assert_eq!(messages.len(), 3);
    assert_eq!((messages[0].text.as_deref(), messages[0].chat_id), (Some("hi"), chat_id));
    assert_eq!(messages[0].external_message_id.as_deref(), Some("wamid.hi"));
    // Neither text nor files.
    let mut empty = message("x", "4917000001");
    empty["MESSAGES"][0]["message"] = json!({"id": "wamid.e"});
    let (status, v) = call(&sb, "imconnector.send.messages", empty).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("IMCONNECTOR_NOT_ALL_THE_REQUIRED_DATA")));

    // The operator answers: a bracketed form to the bound handler.
    let files = vec![FileSpec::new("a.pdf", "file", "https://portal.example/disk/a.pdf", 1234)];
    let reply = sb.operator_reply(line, "4917000001", "[b]Klaus:[/b][br]Hallo", files).await.unwrap();
    assert_eq!((reply.status, reply.chat_id), (200, chat_id));
    let raw = app.raw();
    assert_eq!(raw[0].0, "application/x-www-form-urlencoded");
    assert!(String::from_utf8_lossy(&raw[0].1).contains("data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D="));
    let ev = &app.bodies()[0];
    assert_eq!(ev["event"], "ONIMCONNECTORMESSAGEADD");
    assert!(ev["event_handler_id"].is_string() && ev["ts"].is_string());
    assert_eq!(ev["data"]["CONNECTOR"], "wabridge_wa");
    assert_eq!(ev["data"]["LINE"], line.to_string());
    let m = &ev["data"]["MESSAGES"][0];
    assert_eq!(m["im"]["chat_id"], chat_id.to_string());
    assert_eq!(m["im"]["message_id"], reply.message_id.to_string());
    assert_eq!(m["message"]["text"], "[b]Klaus:[/b][br]Hallo");
    assert_eq!(
        m["message"]["files"][0],
        json!({"name": "a.pdf", "type": "file", "link": "https://portal.example/disk/a.pdf", "size": "1234"})
    );
    assert_eq!(m["chat"]["id"], "4917000001");
    assert_eq!(ev["auth"]["application_token"], sb.application_token());
    assert_eq!(ev["auth"]["member_id"], sb.member_id());
    assert_eq!(ev["auth"]["client_endpoint"], sb.client_endpoint());
    assert_eq!(ev["auth"]["access_token"], sb.current_access_token());

    // Duplicate delivery: the same bytes again.
    assert_eq!(sb.repost_last().await.unwrap(), 200);
    let raw = app.raw();
    assert_eq!(raw[0].1, raw[1].1);
    // A forgery carries another application token; the handler's answer is reported.
    app.status.store(401, Ordering::SeqCst);
    let forged = sb.with_application_token("forged").operator_reply(line, "4917000001", "x", vec![]).await.unwrap();
    assert_eq!(forged.status, 401);
    assert_eq!(app.bodies()[2]["auth"]["application_token"], "forged");
    app.status.store(200, Ordering::SeqCst);

    // Delivery marks: message.id must be an array.
    let mark = |id: Value| {
        json!({"CONNECTOR": "wabridge_wa", "LINE": line, "MESSAGES": [{
            "im": {"chat_id": reply.chat_id, "message_id": reply.message_id},
            "message": {"id": id, "date": 1_773_759_200}, "chat": {"id": "4917000001"}}]})
    };
    let (status, v) = call(&sb, "imconnector.send.status.delivery", mark(json!("wamid.out1"))).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("ERROR_ARGUMENT")), "{v}");
    assert!(sb.delivery_marks().is_empty());
    let (status, v) = call(&sb, "imconnector.send.status.delivery", mark(json!(["wamid.out1"]))).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"], json!({"SUCCESS": true, "DATA": []}));
    let marks = sb.delivery_marks();
    assert_eq!(
        (marks[0].im_message_id, marks[0].external_ids.clone()),
        (reply.message_id, vec!["wamid.out1".to_string()])
    );
    assert_eq!(call(&sb, "imconnector.send.status.reading", mark(json!(["wamid.out1"]))).await.0, 200);
    assert_eq!(sb.reading_marks().len(), 1);

    // Disabling the connector clears its data and fires ONIMCONNECTORSTATUSDELETE.
    let (_, v) =
        call(&sb, "imconnector.activate", json!({"CONNECTOR": "wabridge_wa", "LINE": line, "ACTIVE": "0"})).await;
    assert_eq!(v["result"], true);
    sb.settle().await;
    assert_eq!(sb.connector_data(line), None);
    assert_eq!(sb.connector_status(line), None);
    let ev = app.bodies().pop().unwrap();
    assert_eq!(ev["event"], "ONIMCONNECTORSTATUSDELETE");
    assert_eq!(ev["data"], json!({"connector": "wabridge_wa", "line": line.to_string()}));
    assert!(matches!(
        sb.operator_reply(line, "4917000001", "x", vec![]).await,
        Err(PostError::ConnectorNotActive(l)) if l == line
    ));

    // Deleting the line: data = the line id.
    assert_eq!(sb.delete_line(line).await.unwrap(), vec![200]);
    let ev = app.bodies().pop().unwrap();
    assert_eq!(
        (ev["event"].as_str(), ev["data"].as_str()),
        (Some("ONIMCONNECTORLINEDELETE"), Some(line.to_string().as_str()))
    );
    assert!(sb.lines().is_empty());
}

#[tokio::test]
async fn batch_runs_commands_in_order_with_references_halt_and_limits() {
    let sb = sandbox().await;
    // Written by hand: the order of `cmd` keys matters and serde_json would sort them.
    let body = format!(
        r#"{{"auth": "{}", "halt": 0, "cmd": {{"line": "imopenlines.config.add?PARAMS[LINE_NAME]=wabridge_1",
            "get": "imopenlines.config.get?CONFIG_ID=$result[line]"}}}}"#,
        sb.current_access_token()
    );
    let r = reqwest::Client::new()
        .post(format!("{}batch", sb.client_endpoint()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, v): (u16, Value) = (r.status().as_u16(), r.json().await.unwrap());
    assert_eq!(status, 200, "{v}");
    let r = &v["result"];
    let id = r["result"]["line"].as_u64().unwrap();
    assert_eq!(r["result"]["get"]["LINE_NAME"], "wabridge_1");
    assert_eq!(r["result"]["get"]["ID"], id.to_string());
    assert_eq!(r["result_error"], json!([]));
    assert!(r["result_time"]["line"]["start"].is_f64());
    assert!(v["time"].is_object());
    let sub: Vec<_> = sb.calls().into_iter().filter(|c| c.via_batch).map(|c| c.method).collect();
    assert_eq!(sub, ["imopenlines.config.add", "imopenlines.config.get"]);

    // Form-encoded, with an error and halt: the rest is skipped.
    let form = format!(
        "auth={}&halt=1&cmd[a]={}&cmd[b]={}&cmd[c]={}",
        sb.current_access_token(),
        "app.info",
        "imopenlines.config.get%3FCONFIG_ID%3D999",
        "app.info"
    );
    let (status, v) = call_form(&sb, "batch", form).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["result"]["a"]["INSTALLED"], true);
    assert_eq!(v["result"]["result_error"]["b"]["error"], "CONFIG_NOT_FOUND");
    assert!(v["result"]["result"].get("c").is_none());

    let (_, v) = call(&sb, "batch", json!({"cmd": {"x": "batch?cmd[y]=app.info"}})).await;
    assert_eq!(v["result"]["result_error"]["x"]["error"], "ERROR_BATCH_METHOD_NOT_ALLOWED");
    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("app.info"))).collect();
    let (status, v) = call(&sb, "batch", json!({"cmd": many})).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("ERROR_BATCH_LENGTH_EXCEEDED")));
}

#[tokio::test]
async fn messageservice_senders_sms_and_status_updates() {
    let sb = sandbox().await;
    let app = Receiver::start().await;
    let sender =
        json!({"CODE": "wabridge_wa", "TYPE": "SMS", "HANDLER": app.url("/api/sms/bitrix"), "NAME": "WhatsApp"});

    let mut bad = sender.clone();
    bad["TYPE"] = json!("MMS");
    let (status, v) = call(&sb, "messageservice.sender.add", bad).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("ERROR_SENDER_VALIDATION_FAILURE")));
    let mut bad = sender.clone();
    bad["CODE"] = json!("no spaces");
    assert_eq!(call(&sb, "messageservice.sender.add", bad).await.1["error"], "ERROR_SENDER_VALIDATION_FAILURE");

    assert_eq!(call(&sb, "messageservice.sender.add", sender.clone()).await.1["result"], true);
    let (_, v) = call(&sb, "messageservice.sender.add", sender.clone()).await;
    assert_eq!(v["error"], "ERROR_SENDER_ALREADY_INSTALLED");
    assert_eq!(call(&sb, "messageservice.sender.list", json!({})).await.1["result"], json!(["wabridge_wa"]));
    assert_eq!(
        call(&sb, "messageservice.sender.update", json!({"CODE": "wabridge_wa"})).await.1["error"],
        "ERROR_SENDER_OTHER_PARAMS_REQUIRED"
    );
    assert_eq!(
        call(&sb, "messageservice.sender.update", json!({"CODE": "nope", "NAME": "x"})).await.1["error"],
        "ERROR_SENDER_NOT_FOUND"
    );
    assert_eq!(
        call(&sb, "messageservice.sender.update", json!({"CODE": "wabridge_wa", "NAME": "WA"})).await.1["result"],
        true
    );
    assert_eq!(sb.sms_senders()[0].name, json!("WA"));

    let (status, message_id) = sb.robot_sms("wabridge_wa", "+4917000001", "Your code is 1234").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(message_id.len(), 32);
    let got = &app.bodies()[0];
    assert_eq!(got["module_id"], "bizproc");
    assert_eq!(got["message_id"], message_id);
    assert_eq!(got["message_to"], "+4917000001");
    assert_eq!(got["message_body"], "Your code is 1234");
    assert_eq!(got["properties"]["phone_number"], "+4917000001");
    assert_eq!((got["code"].as_str(), got["type"].as_str()), (Some("wabridge_wa"), Some("SMS")));
    assert_eq!(got["auth"]["application_token"], sb.application_token());
    assert_eq!(got["document_id"][2], "LEAD_1");

    let update = |status: &str, id: &str| json!({"CODE": "wabridge_wa", "MESSAGE_ID": id, "STATUS": status});
    let (status, v) = call(&sb, "messageservice.message.status.update", update("read", &message_id)).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("ERROR_MESSAGE_STATUS_INCORRECT")));
    let (_, v) = call(&sb, "messageservice.message.status.update", update("sent", "0123")).await;
    assert_eq!(v["error"], "ERROR_MESSAGE_NOT_FOUND");
    assert_eq!(
        call(&sb, "messageservice.message.status.update", update("delivered", &message_id)).await.1["result"],
        true
    );
    assert_eq!(sb.sms_statuses(), vec![(message_id.clone(), "delivered".to_string())]);
    assert_eq!(sb.sms_messages()[0].status.as_deref(), Some("delivered"));

    let crm = SmsOrigin::Crm { owner_type_id: 3, owner_id: 42 };
    sb.events().sms("wabridge_wa", "+4917000002", "hi", crm).await.unwrap();
    let got = &app.bodies()[1];
    assert_eq!((got["module_id"].as_str(), got["bindings"][0]["OWNER_ID"].as_str()), (Some("crm"), Some("42")));

    assert_eq!(call(&sb, "messageservice.sender.delete", json!({"CODE": "wabridge_wa"})).await.1["result"], true);
    assert_eq!(call(&sb, "messageservice.sender.list", json!({})).await.1["result"], json!([]));
    assert_eq!(
        call(&sb, "messageservice.sender.delete", json!({"CODE": "wabridge_wa"})).await.1["error"],
        "ERROR_SENDER_NOT_FOUND"
    );
    assert!(matches!(sb.robot_sms("wabridge_wa", "+1", "x").await, Err(PostError::UnknownSender(_))));
}

#[tokio::test]
async fn install_and_uninstall_events_and_form_bodies() {
    let sb = sandbox().await;
    let app = Receiver::start().await;
    let before = sb.current_refresh_token();
    assert_eq!(sb.install(&app.url("/api/bitrix/install")).await.unwrap(), 200);
    let ev = &app.bodies()[0];
    assert_eq!(ev["event"], "ONAPPINSTALL");
    let auth = &ev["auth"];
    assert_eq!(auth["access_token"], sb.current_access_token());
    assert_eq!(auth["refresh_token"], sb.current_refresh_token());
    assert_ne!(auth["refresh_token"], before);
    for k in [
        "expires_in",
        "application_token",
        "member_id",
        "domain",
        "client_endpoint",
        "server_endpoint",
        "status",
        "scope",
    ] {
        assert!(auth[k].is_string(), "{k} missing in {auth}");
    }

    // REST with a bracketed form body and auth inside it.
    let body = form::encode(&json!({"auth": sb.current_access_token(), "event": "onappuninstall",
                                    "handler": app.url("/api/bitrix/events")}));
    let (status, v) = call_form(&sb, "event.bind", body).await;
    assert_eq!((status, &v["result"]), (200, &json!(true)), "{v}");
    assert_eq!(sb.bound_events()[0].event, "ONAPPUNINSTALL");
    assert_eq!(sb.calls_of("event.bind")[0].params["event"], "onappuninstall");

    assert_eq!(sb.uninstall(&app.url("/api/bitrix/events")).await.unwrap(), 200);
    let ev = &app.bodies()[1];
    assert_eq!(ev["event"], "ONAPPUNINSTALL");
    assert!(ev["auth"].get("access_token").is_none() && ev["auth"].get("refresh_token").is_none());
    assert_eq!(ev["auth"]["application_token"], sb.application_token());
    assert!(sb.bound_events().is_empty());
    assert_eq!(call(&sb, "app.info", json!({})).await.1["result"]["INSTALLED"], false);

    // JSON posting and raw posting for forgeries.
    let raw = json!({"event": "ONAPPINSTALL", "auth": {"application_token": "x"}});
    assert_eq!(sb.events().as_json().post_raw(&app.url("/raw"), &raw).await.unwrap(), 200);
    assert_eq!(app.raw()[2].0, "application/json");
    assert_eq!(app.bodies()[2], raw);
}

/// `imconnector.update.messages` / `imconnector.delete.messages` (bitrix24.md §2.6) match the message sent with
/// the same external `message.id` and `chat.id`, are recorded (`Updated`, `Deleted`), and refuse an unknown one
/// per message (`SUCCESS: false`, `MESSAGE_NOT_FOUND`).
#[tokio::test]
async fn update_and_delete_match_the_sent_message() {
    let sb = sandbox().await;
    let app = Receiver::start().await;
    let line = set_up_line(&sb, &app).await;
    let (_, v) =
        call(&sb, "imconnector.activate", json!({"CONNECTOR": "wabridge_wa", "LINE": line, "ACTIVE": 1})).await;
    assert_eq!(v["result"], true);
    let one = |id: &str, text: Option<&str>| {
        let mut message = json!({"id": id});
        if let Some(t) = text {
            message["text"] = json!(t);
        }
        json!({"CONNECTOR": "wabridge_wa", "LINE": line,
               "MESSAGES": [{"user": {"id": "4917000001"}, "message": message, "chat": {"id": "4917000001"}}]})
    };
    let (status, v) = call(&sb, "imconnector.send.messages", one("wamid.a", Some("old"))).await;
    assert_eq!((status, &v["result"]["SUCCESS"]), (200, &json!(true)), "{v}");
    let (status, v) = call(&sb, "imconnector.update.messages", one("wamid.a", Some("new"))).await;
    assert_eq!((status, &v["result"]["DATA"]["RESULT"][0]["SUCCESS"]), (200, &json!(true)), "{v}");
    let (_, v) = call(&sb, "imconnector.delete.messages", one("wamid.a", None)).await;
    assert_eq!(v["result"]["DATA"]["RESULT"][0]["SUCCESS"], true, "{v}");
    let (_, v) = call(&sb, "imconnector.update.messages", one("wamid.nope", Some("x"))).await;
    assert_eq!(v["result"]["SUCCESS"], false);
    assert_eq!(v["result"]["DATA"]["RESULT"][0]["ERRORS"][0]["code"], "MESSAGE_NOT_FOUND");
    let kinds: Vec<(MessageKind, Option<String>)> =
        sb.chat_messages().iter().map(|m| (m.kind, m.text.clone())).collect();
    assert_eq!(
        kinds,
        [
            (MessageKind::Sent, Some("old".into())),
            (MessageKind::Updated, Some("new".into())),
            (MessageKind::Deleted, None)
        ]
    );
    assert!(sb.chat_messages().iter().all(|m| m.external_message_id.as_deref() == Some("wamid.a")));
    sb.stop().await;
}
