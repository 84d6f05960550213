-- Who may do what, changed at run time: members of groups and bindings of roles to subjects.
-- Roles themselves live in the config; these rows add to the config's groups and bindings.

CREATE TABLE access_group_members (
    group_name TEXT    NOT NULL,
    member     TEXT    NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (group_name, member)
);

CREATE TABLE access_bindings (
    role     TEXT    NOT NULL,
    subject  TEXT    NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (role, subject)
);
