-- Local recalibration of the risk model (`refracture recalibrate`): the calibrations registered, each a new model
-- version (new log-odds = intercept + slope x the literature model's), and every evaluation run, registered or not.

CREATE TABLE model_calibration (
    -- the model version it makes, e.g. 1.0.0+1a2b3c4d.cal.5e6f7a8b; assessments carry it
    version         text        PRIMARY KEY,
    -- the literature model's version (parameter table) it applies to: a new table leaves it inactive
    base_version    text        NOT NULL,
    -- the model version that was active when it was fitted (the base itself, or an earlier calibration)
    parent_version  text        NOT NULL,
    method          text        NOT NULL CHECK (method IN ('intercept', 'logistic')),
    intercept       double precision NOT NULL,
    slope           double precision NOT NULL CHECK (slope > 0),
    fitted_at       timestamptz NOT NULL,
    n               integer     NOT NULL,
    events          integer     NOT NULL,
    -- held-out figures of the parent and of this calibration, the split, the tests (JSON)
    metrics         jsonb       NOT NULL,
    -- set when an operator takes it out of use; the newest registered, not retired, for the base is active
    retired_at      timestamptz
);
CREATE INDEX model_calibration_active_idx ON model_calibration (base_version, fitted_at DESC) WHERE retired_at IS NULL;

CREATE TABLE model_evaluation (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    evaluated_at       timestamptz NOT NULL,
    current_version    text        NOT NULL,
    candidate_version  text,
    registered         boolean     NOT NULL,
    reason             text        NOT NULL,
    metrics            jsonb       NOT NULL
);
