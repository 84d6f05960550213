//! The audit log and API tokens, on SQLite and (with `SWITCHYARD_TEST_POSTGRES_URL`) PostgreSQL.

mod support;

use support::on_both;
use switchyard_store::{
    ActorKind, AuditFilter, AuditRecord, NewApiToken, Outcome, Store, TokenError, Via,
};

fn record(at_ms: i64, actor: &str, action: &str, object: &str, outcome: Outcome) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor_kind: ActorKind::User,
        actor: actor.into(),
        via: Via::SlashCommand,
        action: action.into(),
        object: object.into(),
        outcome,
        detail: format!("{actor} {action}"),
    }
}

async fn seed(store: &Store) {
    let records = [
        record(
            1_000,
            "U1",
            "machines.enable",
            "machine:laser-1",
            Outcome::Ok,
        ),
        record(
            2_000,
            "U2",
            "machines.disable",
            "machine:laser-1",
            Outcome::Refused,
        ),
        record(3_000, "U1", "alerts.ack", "alert:42", Outcome::Ok),
        record(
            4_000,
            "U3",
            "machines_x.enable",
            "machine:saw",
            Outcome::Failed,
        ),
        record(5_000, "U1", "machines.enable", "machine:saw", Outcome::Ok),
    ];
    for r in &records {
        store.audit(r).await.unwrap();
    }
}

fn actions(entries: &[switchyard_store::AuditEntry]) -> Vec<(i64, &str)> {
    entries
        .iter()
        .map(|e| (e.record.at_ms, e.record.action.as_str()))
        .collect()
}

#[tokio::test]
async fn audit_records_round_trip_newest_first() {
    on_both(|store| async move {
        seed(&store).await;
        let all = store.audit_query(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert_eq!(
            all[4].record,
            record(
                1_000,
                "U1",
                "machines.enable",
                "machine:laser-1",
                Outcome::Ok
            )
        );
    })
    .await;
}

#[tokio::test]
async fn audit_filters_combine() {
    on_both(|store| async move {
        seed(&store).await;
        let q = |f: AuditFilter| {
            let store = store.clone();
            async move { store.audit_query(&f).await.unwrap() }
        };
        let by_actor = q(AuditFilter {
            actor: Some("U1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            actions(&by_actor),
            [
                (5_000, "machines.enable"),
                (3_000, "alerts.ack"),
                (1_000, "machines.enable")
            ]
        );
        let by_object = q(AuditFilter {
            object: Some("machine:laser-1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_object.len(), 2);
        // A prefix, matched literally: `_` is not a wildcard, and case counts.
        let by_action = q(AuditFilter {
            action_prefix: Some("machines.".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_action.len(), 3);
        let underscore = q(AuditFilter {
            action_prefix: Some("machines_".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(actions(&underscore), [(4_000, "machines_x.enable")]);
        let upper = q(AuditFilter {
            action_prefix: Some("MACHINES".into()),
            ..Default::default()
        })
        .await;
        assert!(upper.is_empty());
        let window = q(AuditFilter {
            since_ms: Some(2_000),
            until_ms: Some(4_000),
            ..Default::default()
        })
        .await;
        assert_eq!(
            actions(&window),
            [(3_000, "alerts.ack"), (2_000, "machines.disable")]
        );
        let refused = q(AuditFilter {
            outcome: Some(Outcome::Refused),
            ..Default::default()
        })
        .await;
        assert_eq!(refused.len(), 1);
        let everything = q(AuditFilter {
            since_ms: Some(1_000),
            actor: Some("U1".into()),
            object: Some("machine:saw".into()),
            action_prefix: Some("machines".into()),
            outcome: Some(Outcome::Ok),
            ..Default::default()
        })
        .await;
        assert_eq!(actions(&everything), [(5_000, "machines.enable")]);
    })
    .await;
}

#[tokio::test]
async fn audit_pages_by_id() {
    on_both(|store| async move {
        seed(&store).await;
        let mut seen = Vec::new();
        let mut before_id = None;
        loop {
            let page = store
                .audit_query(&AuditFilter {
                    limit: 2,
                    before_id,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            before_id = page.last().map(|e| e.id);
            seen.extend(page.into_iter().map(|e| e.record.at_ms));
        }
        assert_eq!(seen, [5_000, 4_000, 3_000, 2_000, 1_000]);
    })
    .await;
}

#[tokio::test]
async fn audit_is_part_of_the_transaction() {
    on_both(|store| async move {
        let mut tx = store.begin().await.unwrap();
        tx.audit(&record(1, "U1", "a.rolled_back", "", Outcome::Ok))
            .await
            .unwrap();
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        tx.audit(&record(2, "U1", "a.committed", "", Outcome::Ok))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let all = store.audit_query(&AuditFilter::default()).await.unwrap();
        assert_eq!(actions(&all), [(2, "a.committed")]);
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_records_is_written_in_order_in_the_transaction() {
    on_both(|store| async move {
        // More than one statement's worth, each record's fields in its own row.
        let records: Vec<AuditRecord> = (0..1_100)
            .map(|i| {
                let outcome = [Outcome::Ok, Outcome::Refused, Outcome::Failed][i % 3];
                record(
                    i as i64,
                    &format!("U{i}"),
                    "a.batch",
                    &format!("o:{i}"),
                    outcome,
                )
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        tx.audit_many(&records[..3]).await.unwrap();
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        tx.audit_many(&records).await.unwrap();
        tx.audit_many(&[]).await.unwrap();
        tx.commit().await.unwrap();
        let mut all = Vec::new();
        let mut before_id = None;
        loop {
            let page = store
                .audit_query(&AuditFilter {
                    limit: 1_000,
                    before_id,
                    ..AuditFilter::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before_id = Some(last.id);
            all.extend(page);
        }
        all.reverse();
        let written: Vec<AuditRecord> = all.into_iter().map(|e| e.record).collect();
        assert_eq!(
            written, records,
            "all of them, in order, none from the dropped one"
        );
    })
    .await;
}

#[tokio::test]
async fn audit_prunes_by_age() {
    on_both(|store| async move {
        seed(&store).await;
        // One at a time (a chunk of 1), then nothing left before the cut.
        assert_eq!(store.audit_prune(3_000, 1).await.unwrap(), 1);
        assert_eq!(store.audit_prune(3_000, 1000).await.unwrap(), 1);
        assert_eq!(store.audit_prune(3_000, 1000).await.unwrap(), 0);
        let left = store.audit_query(&AuditFilter::default()).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.record.at_ms).collect::<Vec<_>>(),
            [5_000, 4_000, 3_000]
        );
    })
    .await;
}

fn new_token(name: &str, scopes: &[&str], expires_at_ms: Option<i64>) -> NewApiToken {
    NewApiToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at_ms,
    }
}

async fn create(store: &Store, token: &NewApiToken, now_ms: i64) -> switchyard_store::CreatedToken {
    let mut tx = store.begin().await.unwrap();
    let created = tx.token_create(token, now_ms).await.unwrap();
    tx.commit().await.unwrap();
    created
}

#[tokio::test]
async fn tokens_verify_until_expired_or_revoked() {
    on_both(|store| async move {
        let forever = create(
            &store,
            &new_token("grafana", &["alerts:write"], None),
            1_000,
        )
        .await;
        let brief = create(
            &store,
            &new_token("brief", &["audit:read"], Some(5_000)),
            1_000,
        )
        .await;
        assert!(forever.plaintext.starts_with("sy_"));
        assert!(!format!("{forever:?}").contains(&forever.plaintext));

        let info = store
            .token_verify(&forever.plaintext, 2_000)
            .await
            .unwrap()
            .expect("valid");
        assert_eq!(info.name, "grafana");
        assert_eq!(info.scopes, ["alerts:write"]);
        assert_eq!(info.last_used_at_ms, Some(2_000));
        assert!(info.allows("alerts:write") && !info.allows("audit:read"));

        assert!(
            store
                .token_verify(&brief.plaintext, 4_999)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .token_verify(&brief.plaintext, 5_000)
                .await
                .unwrap()
                .is_none()
        );
        for wrong in ["", "sy_", "nope", &format!("{}x", forever.plaintext)] {
            assert!(
                store.token_verify(wrong, 2_000).await.unwrap().is_none(),
                "{wrong}"
            );
        }

        let mut tx = store.begin().await.unwrap();
        let revoked = tx.token_revoke("grafana", 3_000).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((revoked.id, revoked.revoked_at_ms), (info.id, Some(3_000)));
        assert!(
            store
                .token_verify(&forever.plaintext, 3_001)
                .await
                .unwrap()
                .is_none()
        );

        let mut tx = store.begin().await.unwrap();
        let by_id = tx
            .token_revoke(&brief.info.id.to_string(), 3_000)
            .await
            .unwrap();
        assert_eq!(by_id.name, "brief");
        assert!(matches!(
            tx.token_revoke("grafana", 3_000).await,
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            tx.token_revoke("99999999999999999999999", 3_000).await,
            Err(TokenError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn token_listing_has_no_secrets_and_names_are_unique_while_in_force() {
    on_both(|store| async move {
        let first = create(
            &store,
            &new_token("ci", &["audit:read", "alerts:*"], None),
            1,
        )
        .await;
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.token_create(&new_token("ci", &["admin"], None), 2).await,
            Err(TokenError::NameTaken(_))
        ));
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        for (name, scopes) in [
            ("12", &["admin"][..]),
            ("ok", &["Admin"][..]),
            ("ok", &[][..]),
        ] {
            assert!(
                tx.token_create(&new_token(name, scopes, None), 2)
                    .await
                    .is_err()
            );
        }
        tx.token_revoke("ci", 3).await.unwrap();
        let second = tx
            .token_create(&new_token("ci", &["admin"], None), 4)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_ne!(first.plaintext, second.plaintext);

        let listed = store.token_list().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].scopes, ["audit:read", "alerts:*"]);
        assert_eq!(listed[0].revoked_at_ms, Some(3));
        assert_eq!(listed[1].revoked_at_ms, None);
        let shown = format!("{listed:?}");
        assert!(!shown.contains(&first.plaintext[3..]) && !shown.contains(&second.plaintext[3..]));
    })
    .await;
}
