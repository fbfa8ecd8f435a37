//! The job engine's leases: a job a worker is still running keeps its lease, so nothing else runs it twice.

use crate::common::{Db, TestApp};
use wabridge::jobs::{Enqueue, Task};

async fn lease_of(app: &TestApp, id: i64) -> (Option<String>, Option<i64>) {
    sqlx::query_as::<_, (Option<String>, Option<i64>)>("SELECT lease_owner, lease_expires_at FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(app.svc.store.raw_pool())
        .await
        .unwrap()
}

/// Regression (issue 12): only lane jobs had their leases renewed, so a handler slower than `job_lease_seconds`
/// (a slow portal, a long media download) saw its job leased and run a second time by another worker or
/// process: a second `imconnector.send.messages` for one message. Running jobs' leases are now renewed; jobs
/// of other owners, lane jobs and ended jobs are left alone.
async fn running_jobs_keep_their_leases(db: Db) {
    let app = TestApp::start(db).await;
    let engine = app.svc.engine();
    let task = |waba_id| Task::TemplatesSync(wabridge::jobs::catalogue::TemplatesSync { waba_id });
    let mine = engine.enqueue(&task(1), Enqueue::default()).await.unwrap().unwrap();
    let done = engine.enqueue(&task(2), Enqueue::default()).await.unwrap().unwrap();
    let leased = engine.lease(10).await.unwrap();
    assert!(leased.iter().any(|j| j.id == mine) && leased.iter().any(|j| j.id == done), "{leased:?}");
    let pool = app.svc.store.raw_pool();
    sqlx::query("UPDATE jobs SET done_at = 1 WHERE id = $1").bind(done).execute(pool).await.unwrap();
    let other = engine.enqueue(&task(3), Enqueue::default()).await.unwrap().unwrap();
    sqlx::query("UPDATE jobs SET lease_owner = 'another-process', lease_expires_at = 5 WHERE id = $1")
        .bind(other)
        .execute(pool)
        .await
        .unwrap();
    let (owner, before) = lease_of(&app, mine).await;
    assert_eq!(owner.as_deref(), Some(engine.owner()));
    let until = before.unwrap() + 60_000;
    let backend = app.svc.store.backend;
    let n = wabridge::store::jobs::renew_running_on(pool, backend, engine.owner(), until).await.unwrap();
    assert_eq!(n, 1, "only the running job of this owner");
    assert_eq!(lease_of(&app, mine).await.1, Some(until));
    if backend == wabridge::store::Backend::Postgres {
        // A row another transaction holds (a worker recording its job's outcome) is skipped, not waited for, so a
        // renewal never takes part in a deadlock; the next round renews it.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE").bind(mine).fetch_one(&mut *tx).await.unwrap();
        sqlx::query("UPDATE jobs SET lease_expires_at = 1 WHERE id = $1").bind(mine).execute(&mut *tx).await.unwrap();
        let renew = wabridge::store::jobs::renew_running_on(pool, backend, engine.owner(), until + 1);
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), renew)
            .await
            .expect("the renewal waited for a row another transaction holds")
            .unwrap();
        assert_eq!(n, 0, "the held row is skipped");
        tx.rollback().await.unwrap();
        let n = wabridge::store::jobs::renew_running_on(pool, backend, engine.owner(), until + 1).await.unwrap();
        assert_eq!((n, lease_of(&app, mine).await.1), (1, Some(until + 1)), "released: the next round renews it");
    }
    let until = lease_of(&app, mine).await.1.unwrap();
    assert_eq!(lease_of(&app, other).await.1, Some(5), "another process's lease is its own");
    assert_ne!(lease_of(&app, done).await.1, Some(until), "an ended job is not renewed");
    // While the job's lease is renewed, no worker can lease it again.
    assert!(engine.lease(10).await.unwrap().iter().all(|j| j.id != mine));
    for job in leased {
        if job.id == mine {
            engine.run(job).await;
        }
    }
    app.stop().await;
}

both_databases!(running_jobs_keep_their_leases);
