-- CDS Hooks (docs/cds-hooks.md): the ids (jti) of the EHR's tokens, kept until each token expires so that a
-- replayed call is refused, and what clinicians did with refracture's cards (the feedback endpoint).

CREATE TABLE cds_jti (
    issuer      text        NOT NULL,
    jti         text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
-- Expired ids are deleted as new ones arrive: the table holds a few minutes of calls.
CREATE INDEX cds_jti_expires_idx ON cds_jti (expires_at);

CREATE TABLE cds_feedback (
    id                    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at           timestamptz NOT NULL,
    -- the EHR (its iss) or, in development, the token's subject
    caller                text        NOT NULL,
    service_id            text        NOT NULL,
    -- the card's uuid: deterministic per patient and alert or assessment (service/fhir/cds_hooks_cards.py)
    card                  text        NOT NULL,
    outcome               text        NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions  jsonb       NOT NULL DEFAULT '[]',
    override_system       text,
    override_code         text,
    -- the clinician's own words: kept here (like alert notes), never logged
    override_comment      text,
    outcome_at            timestamptz
);
CREATE INDEX cds_feedback_card_idx ON cds_feedback (card, received_at);
