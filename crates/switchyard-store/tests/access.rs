//! Runtime groups and bindings, on SQLite and (with `SWITCHYARD_TEST_POSTGRES_URL`) PostgreSQL.

mod support;

use support::on_both;
use switchyard_store::{ActorKind, AuditFilter, AuditRecord, Outcome, Via};

#[tokio::test]
async fn groups_and_bindings_change_once_and_list_in_order() {
    on_both(|store| async move {
        let mut tx = store.begin().await.unwrap();
        assert!(tx.access_group_add("oncall", "U0BBB", 10).await.unwrap());
        assert!(tx.access_group_add("oncall", "U0AAA", 11).await.unwrap());
        assert!(
            !tx.access_group_add("oncall", "U0AAA", 12).await.unwrap(),
            "a second add changes nothing"
        );
        assert!(
            tx.access_group_add("night", "usergroup:S01", 13)
                .await
                .unwrap()
        );
        assert!(
            tx.access_bind("operator", "group:oncall", 14)
                .await
                .unwrap()
        );
        assert!(
            !tx.access_bind("operator", "group:oncall", 15)
                .await
                .unwrap()
        );
        assert!(tx.access_bind("admin", "U0ADMIN", 16).await.unwrap());
        tx.commit().await.unwrap();

        let members: Vec<(String, String, i64)> = store
            .access_group_members()
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.group, m.member, m.added_at_ms))
            .collect();
        assert_eq!(
            members,
            [
                ("night".into(), "usergroup:S01".into(), 13),
                ("oncall".into(), "U0AAA".into(), 11),
                ("oncall".into(), "U0BBB".into(), 10),
            ]
        );
        let bindings: Vec<(String, String)> = store
            .access_bindings()
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.role, b.subject))
            .collect();
        assert_eq!(
            bindings,
            [
                ("admin".into(), "U0ADMIN".into()),
                ("operator".into(), "group:oncall".into())
            ]
        );

        let mut tx = store.begin().await.unwrap();
        assert!(tx.access_group_remove("oncall", "U0AAA").await.unwrap());
        assert!(!tx.access_group_remove("oncall", "U0AAA").await.unwrap());
        assert!(tx.access_unbind("admin", "U0ADMIN").await.unwrap());
        assert!(!tx.access_unbind("admin", "U0NOBODY").await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(store.access_group_members().await.unwrap().len(), 2);
        assert_eq!(store.access_bindings().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_change_and_its_audit_record_commit_together_or_not_at_all() {
    on_both(|store| async move {
        let record = AuditRecord {
            at_ms: 1,
            actor_kind: ActorKind::System,
            actor: "system".into(),
            via: Via::Cli,
            action: "access.bind".into(),
            object: "role:admin".into(),
            outcome: Outcome::Ok,
            detail: "subject U0X".into(),
        };
        let mut tx = store.begin().await.unwrap();
        tx.access_bind("admin", "U0X", 1).await.unwrap();
        tx.audit(&record).await.unwrap();
        drop(tx);
        assert!(store.access_bindings().await.unwrap().is_empty());
        assert!(
            store
                .audit_query(&AuditFilter::default())
                .await
                .unwrap()
                .is_empty()
        );

        let mut tx = store.begin().await.unwrap();
        tx.access_bind("admin", "U0X", 1).await.unwrap();
        tx.audit(&record).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.access_bindings().await.unwrap().len(), 1);
        assert_eq!(
            store
                .audit_query(&AuditFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
    })
    .await;
}
