"""The schema of the store: numbered migrations, each run once and in order.

Names in it: a phase is one of iml_core.agents.PhaseName (infer, induce, revise, eval, score)
wherever a row says `phase`. The steps table's `train_accuracy`, `train_invalid` and the "train" key of its
`per_class` name the training split (which samples were answered), not a phase: they stay as
they are. A prediction or model call says in `served` what it was made for: 'step' (a learning
run's step), 'evaluation' (notes scored, ablated or transferred) or 'baseline'.
"""

# Numbered migrations: each runs once, in order, in its own transaction, and is recorded in
# schema_migrations. Never edit one that has shipped; add the next number.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "runs, steps, batch notes and predictions", """
        CREATE SEQUENCE run_ids START 1;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
            task VARCHAR NOT NULL,
            task_source JSON NOT NULL,
            agent VARCHAR NOT NULL,
            agent_description VARCHAR NOT NULL,
            config JSON NOT NULL,
            status VARCHAR NOT NULL,
            error VARCHAR,
            steps_total INTEGER NOT NULL,
            steps_done INTEGER NOT NULL DEFAULT 0,
            final_eval_accuracy DOUBLE,
            best_eval_accuracy DOUBLE,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            started_at TIMESTAMP,
            finished_at TIMESTAMP
        );
        CREATE TABLE steps (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            notes VARCHAR NOT NULL,
            train_accuracy DOUBLE,
            train_invalid INTEGER NOT NULL,
            eval_accuracy DOUBLE,
            eval_invalid INTEGER NOT NULL,
            per_class JSON NOT NULL,
            notes_words INTEGER NOT NULL,
            words_changed INTEGER NOT NULL,
            prefix_words INTEGER NOT NULL,
            prefix_kept_by_model BOOLEAN,
            words_truncated INTEGER NOT NULL,
            seconds_infer DOUBLE NOT NULL,
            seconds_induce DOUBLE NOT NULL,
            seconds_revise DOUBLE NOT NULL,
            seconds_eval DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, step)
        );
        CREATE TABLE batch_notes (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            minibatch INTEGER NOT NULL,
            text VARCHAR NOT NULL,
            PRIMARY KEY (run_id, step, minibatch)
        );
        CREATE TABLE predictions (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            phase VARCHAR NOT NULL,
            minibatch INTEGER,
            sample_id INTEGER NOT NULL,
            predicted VARCHAR,
            label VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            raw VARCHAR NOT NULL
        );
    """),
    (2, "model call log and token totals", """
        CREATE SEQUENCE call_ids START 1;
        CREATE TABLE model_calls (
            id BIGINT PRIMARY KEY DEFAULT nextval('call_ids'),
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            phase VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL,
            duration_ms DOUBLE NOT NULL,
            cached BOOLEAN NOT NULL,
            error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE steps ADD COLUMN tokens_in INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN tokens_out INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN tokens_cached INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN tokens_in BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN tokens_out BIGINT NOT NULL DEFAULT 0;
    """),
    (3, "response cache, prompts kept with runs, cost", """
        CREATE TABLE response_cache (
            key VARCHAR PRIMARY KEY,
            raw VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE runs ADD COLUMN prompts JSON;
        ALTER TABLE runs ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
        ALTER TABLE model_calls ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
    """),
    (4, "forks remember their parent run and step", """
        ALTER TABLE runs ADD COLUMN parent_run_id INTEGER;
        ALTER TABLE runs ADD COLUMN parent_step INTEGER;
    """),
    (5, "what a running run is waiting on", """
        ALTER TABLE runs ADD COLUMN notice VARCHAR;
    """),
    (6, "the notes line each answer relied on; runs grouped in a study", """
        ALTER TABLE predictions ADD COLUMN note_line INTEGER;
        ALTER TABLE response_cache ADD COLUMN line INTEGER;
        ALTER TABLE runs ADD COLUMN study VARCHAR;
    """),
    (7, "what small models get wrong: repeated phrases in the notes, one class for every answer", """
        ALTER TABLE steps ADD COLUMN notes_repetition DOUBLE;
        ALTER TABLE steps ADD COLUMN eval_top_class VARCHAR;
        ALTER TABLE steps ADD COLUMN eval_top_share DOUBLE;
    """),
    (8, "studies numbered from a sequence, not counted", """
        CREATE SEQUENCE study_ids START 1;
    """),
    (9, "sample ids of 64 bits, as CSV files may have them", """
        ALTER TABLE predictions ALTER sample_id TYPE BIGINT;
    """),
    (10, "the inference phase has one name: infer (it was 'train' in the model-call log)", """
        UPDATE model_calls SET phase = 'infer' WHERE phase = 'train';
    """),
    (11, "evaluations: notes scored without learning, baselines, ablations", """
        CREATE SEQUENCE evaluation_ids START 1;
        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY DEFAULT nextval('evaluation_ids'),
            kind VARCHAR NOT NULL,
            run_id INTEGER,
            step INTEGER,
            notes_source VARCHAR NOT NULL,
            notes VARCHAR NOT NULL,
            config JSON NOT NULL,
            agent_description VARCHAR NOT NULL,
            accuracy DOUBLE NOT NULL,
            invalid INTEGER NOT NULL,
            per_class JSON NOT NULL,
            eval_size INTEGER NOT NULL,
            shots INTEGER,
            removed_line INTEGER,
            tokens_in BIGINT NOT NULL,
            tokens_out BIGINT NOT NULL,
            cost DOUBLE NOT NULL,
            seconds DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE evaluation_predictions (
            evaluation_id INTEGER NOT NULL,
            sample_id BIGINT NOT NULL,
            predicted VARCHAR,
            label VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            raw VARCHAR NOT NULL,
            note_line INTEGER
        );
        CREATE TABLE evaluation_calls (
            evaluation_id INTEGER NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL,
            duration_ms DOUBLE NOT NULL,
            cached BOOLEAN NOT NULL,
            error VARCHAR,
            cost DOUBLE NOT NULL
        );
    """),
    (12, "choices a user made once for every tab and reload (the model), never a key", """
        CREATE TABLE choices (
            name VARCHAR PRIMARY KEY,
            value JSON NOT NULL,
            saved_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
    """),
    (13, "one table of model calls and one of predictions, for steps and evaluations alike (served says "
         "which); the inference phase's answers are phase infer", """
        CREATE TABLE model_calls_13 (
            id BIGINT PRIMARY KEY DEFAULT nextval('call_ids'),
            run_id INTEGER,
            step INTEGER,
            phase VARCHAR NOT NULL CHECK (phase IN ('infer', 'induce', 'revise', 'eval')),
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL,
            duration_ms DOUBLE NOT NULL,
            cached BOOLEAN NOT NULL,
            error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            cost DOUBLE NOT NULL DEFAULT 0,
            evaluation_id INTEGER,
            served VARCHAR NOT NULL CHECK (served IN ('step', 'evaluation', 'baseline')),
            CHECK ((served = 'step') = (evaluation_id IS NULL)),
            CHECK (served <> 'step' OR (run_id IS NOT NULL AND step IS NOT NULL))
        );
        INSERT INTO model_calls_13
            SELECT id, run_id, step, CASE phase WHEN 'train' THEN 'infer' ELSE phase END, prompt, response,
                   tokens_in, tokens_out, tokens_cached, duration_ms, cached, error, created_at, cost, NULL, 'step'
            FROM model_calls ORDER BY id;
        -- New ids from call_ids, in the order the evaluations' calls were written.
        INSERT INTO model_calls_13 (run_id, step, phase, prompt, response, tokens_in, tokens_out, tokens_cached,
                                    duration_ms, cached, error, created_at, cost, evaluation_id, served)
            SELECT e.run_id, e.step, 'eval', c.prompt, c.response, c.tokens_in, c.tokens_out, c.tokens_cached,
                   c.duration_ms, c.cached, c.error, coalesce(e.created_at, current_timestamp), c.cost,
                   c.evaluation_id,
                   CASE WHEN e.kind IN ('no notes', 'in-context', 'oracle', 'majority') THEN 'baseline'
                        ELSE 'evaluation' END
            FROM evaluation_calls c LEFT JOIN evaluations e ON e.id = c.evaluation_id
            ORDER BY c.evaluation_id, c.rowid;

        CREATE TABLE predictions_13 (
            run_id INTEGER,
            step INTEGER,
            phase VARCHAR NOT NULL CHECK (phase IN ('infer', 'eval')),
            minibatch INTEGER,
            sample_id BIGINT NOT NULL,
            predicted VARCHAR,
            label VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            raw VARCHAR NOT NULL,
            note_line INTEGER,
            evaluation_id INTEGER,
            served VARCHAR NOT NULL CHECK (served IN ('step', 'evaluation', 'baseline')),
            CHECK ((served = 'step') = (evaluation_id IS NULL)),
            CHECK (served <> 'step' OR (run_id IS NOT NULL AND step IS NOT NULL))
        );
        INSERT INTO predictions_13
            SELECT run_id, step, CASE phase WHEN 'train' THEN 'infer' ELSE phase END, minibatch, sample_id,
                   predicted, label, correct, raw, note_line, NULL, 'step'
            FROM predictions ORDER BY rowid;
        INSERT INTO predictions_13
            SELECT e.run_id, e.step, 'eval', NULL, p.sample_id, p.predicted, p.label, p.correct, p.raw,
                   p.note_line, p.evaluation_id,
                   CASE WHEN e.kind IN ('no notes', 'in-context', 'oracle', 'majority') THEN 'baseline'
                        ELSE 'evaluation' END
            FROM evaluation_predictions p LEFT JOIN evaluations e ON e.id = p.evaluation_id
            ORDER BY p.evaluation_id, p.rowid;

        -- DuckDB cannot add CHECK constraints to a table that exists: the new tables replace the old.
        DROP TABLE model_calls;
        DROP TABLE evaluation_calls;
        ALTER TABLE model_calls_13 RENAME TO model_calls;
        DROP TABLE predictions;
        DROP TABLE evaluation_predictions;
        ALTER TABLE predictions_13 RENAME TO predictions;
    """),
    (14, "a numbered unit of the notes is a sentence (iml_core.attribution), not a line", """
        ALTER TABLE predictions RENAME COLUMN note_line TO note_sentence;
        ALTER TABLE evaluations RENAME COLUMN removed_line TO removed_sentence;
        ALTER TABLE response_cache RENAME COLUMN line TO sentence;
    """),
    (15, "studies numbered per label (the first paper view is paper view 1, whatever came before)", """
        CREATE TABLE study_counters (
            label VARCHAR PRIMARY KEY,
            last INTEGER NOT NULL
        );
    """),
    (16, "learners (iml_core.learners): the candidates each step weighed, with scores and decisions; what a "
         "learner carries between steps; the score phase", """
        CREATE TABLE candidates (
            run_id INTEGER NOT NULL, step INTEGER NOT NULL, position INTEGER NOT NULL, origin VARCHAR NOT NULL,
            minibatch INTEGER, text VARCHAR NOT NULL, "right" INTEGER, scored INTEGER,
            decision VARCHAR NOT NULL CHECK (decision IN ('chosen', 'kept', 'rejected', 'replaced')),
            reason VARCHAR NOT NULL, PRIMARY KEY (run_id, step, position));
        ALTER TABLE steps ADD COLUMN seconds_score DOUBLE NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN learner_state VARCHAR;
        -- DuckDB cannot change a CHECK constraint in place: a new table, as in 13, replaces the old.
        CREATE TABLE model_calls_16 (
            id BIGINT PRIMARY KEY DEFAULT nextval('call_ids'), run_id INTEGER, step INTEGER,
            phase VARCHAR NOT NULL CHECK (phase IN ('infer', 'induce', 'revise', 'eval', 'score')),
            prompt VARCHAR NOT NULL, response VARCHAR NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL, duration_ms DOUBLE NOT NULL, cached BOOLEAN NOT NULL, error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, cost DOUBLE NOT NULL DEFAULT 0,
            evaluation_id INTEGER, served VARCHAR NOT NULL CHECK (served IN ('step', 'evaluation', 'baseline')),
            CHECK ((served = 'step') = (evaluation_id IS NULL)),
            CHECK (served <> 'step' OR (run_id IS NOT NULL AND step IS NOT NULL)));
        INSERT INTO model_calls_16 SELECT * FROM model_calls ORDER BY id;
        DROP TABLE model_calls;
        ALTER TABLE model_calls_16 RENAME TO model_calls;
    """),
    (17, "rule notes scored both ways at each evaluated step: run by the engine, and read by the model", """
        ALTER TABLE steps ADD COLUMN rule_eval_accuracy DOUBLE;
        ALTER TABLE steps ADD COLUMN model_eval_accuracy DOUBLE;
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
