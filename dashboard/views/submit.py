"""Submit: upload a spec or pick one from specs/, see every problem at its YAML line, then run
it locally (a detached ``robustlab run``) or queue it when a broker is configured.

Nothing a user wrote (file name, spec name, keys, values, problem messages) is rendered as
Markdown or HTML: banners carry fixed words only, user text goes through ``st.text``/``st.code``
or ``inert_html``. The spec loader's limits (size, depth, aliases, sweep cells) apply as for
the CLI; uploads are capped by ``server.maxUploadSize`` (``dashboard.launch``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st

from contract.specs.loading import LoadedSpec
from dashboard import components
from dashboard.auth import current_user
from dashboard.submission import (
    FILL_IN_SOURCE,
    QueueUnavailable,
    Validation,
    annotated_yaml_html,
    local_runs,
    no_worker_warning,
    save_spec,
    spec_files,
    start_local_run,
    submit_to_queue,
    template_note,
    validate_spec,
)
from service.settings import get_settings
from service.store import queries

SPECS_DIR = Path("specs")
UPLOAD, PICK, WRITE = "Upload a file", "Pick from specs/", "Write YAML"
QUICKSTART = "quickstart.yaml"
"""Picked first: a new user's first run (templates are never picked first)."""


def source_text() -> tuple[str, str] | None:
    """(text, source name) from the chosen source, or ``None`` while nothing is chosen."""
    how = st.radio("Spec", [PICK, UPLOAD, WRITE], horizontal=True, key="submit_source")
    if how == UPLOAD:
        uploaded = st.file_uploader("YAML spec", type=["yaml", "yml"], key="submit_upload")
        return (uploaded.getvalue().decode(errors="replace"), uploaded.name) if uploaded else None
    if how == PICK:
        files = spec_files(SPECS_DIR)
        if not files:
            st.info(f"No specs under {SPECS_DIR.resolve()}: upload one or write YAML.")
            return None
        names = [str(p) for p in files]
        templates = {name for name in names if template_note((SPECS_DIR / name).read_text())}
        runnable = [name for name in names if name not in templates]
        first = QUICKSTART if QUICKSTART in runnable else (runnable or names)[0]
        chosen = st.selectbox("Spec file", names, index=names.index(first), key="submit_pick",
                              format_func=lambda f: f"{f} (template)" if f in templates else f)
        return (SPECS_DIR / chosen).read_text(), str(SPECS_DIR / chosen)
    text = st.text_area("YAML", height=300, key="submit_text",
                        placeholder="name: my_experiment\nkind: theory\n...")
    return (text, "<editor>") if text.strip() else None


def show_template(source: str, validation: Validation) -> None:
    """A template is valid YAML to fill in, not a spec to run: say so, and how it is used."""
    assert validation.loaded is not None and validation.template is not None
    spec = validation.loaded.spec
    st.warning(f"Template: {FILL_IN_SOURCE}. It validates, but it names no model to run; "
               "fill it in or use it as a standing evaluation.")
    st.text(f"{source}: {spec.name}\ntemplate: {validation.template}")
    path = shlex.quote(source)
    st.code(f"robustlab run {path} --set 'source={{run: RUN_ID}}'\n"
            f"robustlab schedule add {path} --checkpoints-of EXPERIMENT", language="bash")


def show_validation(text: str, source: str, validation: Validation) -> None:
    if validation.template is not None:
        show_template(source, validation)
    elif validation.loaded is not None:
        spec = validation.loaded.spec
        st.success(f"Valid {spec.kind} spec, "  # kind: one of SPEC_KINDS, never user text
                   f"{validation.runs} run{'s' if validation.runs != 1 else ''}")
        st.text(f"{source}: {spec.name}")
    else:
        st.error(f"{len(validation.problems)} problem"
                 f"{'s' if len(validation.problems) != 1 else ''}")
        st.code("\n".join(str(problem) for problem in validation.problems), language=None)
    # Safe: annotated_yaml_html writes every piece of user text (the YAML, the messages) through
    # inert_html, as numeric character references that neither HTML nor Markdown can read.
    st.markdown(annotated_yaml_html(text, validation.problems), unsafe_allow_html=True)


def run_locally(text: str, loaded: LoadedSpec) -> None:
    path = save_spec(text, loaded.spec.name, get_settings().runs_dir / "submitted")
    launched = start_local_run(path, submitted_by=current_user().submitter)
    st.success(f"Started (pid {launched.pid}); follow it on the Runs page.")
    st.code(shlex.join(launched.command), language="bash")
    # The path is runs_dir (the deployment's) / submitted / <name>-<hash>.log, and a spec name
    # is letters, digits and _.- only: nothing in it is Markdown syntax but "_", shown as code.
    st.caption(f"Log: `{launched.log_path.resolve()}`")


def show_local_runs() -> None:
    """The runs this dashboard started locally: running, or how they ended (exit code, signal)."""
    started = local_runs()
    if started:
        st.subheader("Started here")
        st.dataframe([{"pid": state.run.pid, "spec": Path(state.run.command[-1]).name,
                       "outcome": state.outcome, "log": str(state.run.log_path)}
                      for state in started], hide_index=True)


def queue(loaded: LoadedSpec) -> None:
    try:
        submitted = submit_to_queue(loaded, submitted_by=current_user().submitter)
    except QueueUnavailable as exc:
        st.warning(str(exc))
        return
    ids = " ".join(run.id for run in submitted.queued)
    st.success(f"Queued {len(submitted.queued)} run(s) on '{submitted.queue}': {ids}; "
               "follow them on the Runs page.")
    if (warning := no_worker_warning(submitted.queue)) is not None:
        st.warning(warning)
    for runs, what in ((submitted.done, "already succeeded (not run again)"),
                       (submitted.pending, "already queued, running or interrupted "
                                           "(`robustlab resume RUN` continues an interrupted "
                                           "one)")):
        if runs:
            st.info(f"{len(runs)} identical run(s) {what}: {' '.join(r.id for r in runs)}")


st.title("Submit a spec")
url = components.database_url()
status = components.database_status(url)
if not status.ready:
    st.warning(f"Runs cannot be recorded yet in {queries.safe_url(url)}.")
    components.getting_started(status.message)
chosen = source_text()
if chosen is not None:
    text, source = chosen
    validation = validate_spec(text, source)
    show_validation(text, source, validation)
    if validation.runnable and validation.loaded is not None and status.ready:
        left, right, _ = st.columns([1, 1, 3])
        if left.button("Run locally", type="primary", key="submit_run"):
            run_locally(text, validation.loaded)
        if right.button("Queue", key="submit_queue"):
            queue(validation.loaded)
        st.caption(f"Results go to {queries.safe_url(url)}.")
show_local_runs()
