"""Writing from the browser: sign-in, and create / start / stop / archive experiments with forms.

Every form posts ``application/x-www-form-urlencoded`` with the session's CSRF token; without a
session the forms are not shown and a post is refused (401), and a server without a token refuses
them all (403). What is done here is recorded in the audit log under the name given at sign-in.
Validation is the registry's own: its errors are shown beside the field they concern.
"""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from battleground._http import AuthFailure, check_token
from battleground.errors import WebError
from battleground.web._session import Session, csrf_ok
from battleground.web._state import DashboardState, check_key

if TYPE_CHECKING:
    from battleground.stats import SampleSizeResult

__all__ = [
    "FIXED", "FormError", "PlanRequest", "create_form_router", "end_condition_form", "error_field",
    "metric_edit_form", "metric_error_field", "parse_experiment_form", "placement_form", "plan_sample_size",
]

KINDS = ("proportion", "mean", "ratio")
FIXED = "fixed"  # the design choice "no sequential test: one look at the end"
# the design choices of the forms: fixed horizon, then the registry's sequential designs
DESIGN_CHOICES: tuple[tuple[str, str], ...] = (
    (FIXED, "fixed horizon (one look at the end)"),
    ("msprt", "mSPRT, always valid (two-sided)"),
    ("one_sided", "one-sided confidence sequence"),
    ("obrien_fleming", "group-sequential, O'Brien–Fleming spending"),
    ("pocock", "group-sequential, Pocock spending"),
)
MAX_FORM_BYTES = 64 * 1024


class FormError(WebError, ValueError):
    """A form field the server cannot accept; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormError("form", f"the form is larger than {MAX_FORM_BYTES:,} bytes")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=100)
    return {k: v[-1] for k, v in parsed.items()}


def _variants(text: str) -> dict[str, float] | list[str]:
    """``name`` or ``name: weight`` per line (the first is the control)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise FormError("variants", "give at least two variants, one per line (the first is the control)")
    if not any(":" in line for line in lines):
        return lines
    out: dict[str, float] = {}
    for i, line in enumerate(lines, start=1):
        name, _, weight = line.rpartition(":")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise FormError("variants", f"line {i} {line!r}: write 'name: weight' with a number as the weight") from None
    return out


def _margin(token: str, line_no: int, line: str) -> tuple[float, bool]:
    """``margin=0.02`` (a share of the control value) or ``margin_abs=0.5`` (in the metric's unit)."""
    key, _, number = token.partition("=")
    try:
        value = float(number)
    except ValueError:
        raise FormError("metrics", f"line {line_no} {line!r}: write {key.strip()}= with a number, "
                                   f"e.g. margin=0.02 for 2 % of control, got {number.strip()!r}") from None
    return value, key.strip() == "margin"


def _metrics(text: str) -> list[dict[str, Any]]:
    """``name, kind, numerator[, denominator][, primary][, guardrail][, decrease][, margin=X]`` per line.

    A guardrail's non-inferiority margin is ``margin=0.02`` (relative to control) or ``margin_abs=0.5``
    (in the metric's own unit); the registry checks it (only guardrails have one)."""
    out: list[dict[str, Any]] = []
    for i, line in enumerate((x.strip() for x in text.splitlines()), start=1):
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or parts[1] not in KINDS:
            raise FormError("metrics", f"line {i} {line!r}: write 'name, kind, numerator' with kind one of {', '.join(KINDS)}")
        flags = {p for p in parts[3:] if p in ("primary", "guardrail", "decrease")}
        margins = [p for p in parts[3:] if p.split("=", 1)[0].strip() in ("margin", "margin_abs") and "=" in p]
        rest = [p for p in parts[3:] if p not in flags and p not in margins]
        metric: dict[str, Any] = {"name": parts[0], "kind": parts[1], "numerator": parts[2],
                                  "primary": "primary" in flags, "guardrail": "guardrail" in flags}
        if len(margins) > 1:
            raise FormError("metrics", f"line {i} {line!r}: give one margin= (or margin_abs=), not {len(margins)}")
        if margins:
            metric["margin"], metric["margin_relative"] = _margin(margins[0], i, line)
        if rest:
            metric["denominator"] = rest[0]
        if "decrease" in flags:
            metric["direction"] = "decrease"
        out.append(metric)
    if not out:
        raise FormError("metrics", "give at least one metric, e.g. 'conversion, proportion, purchase, primary'")
    return out


def _days_field(text: str, field: str, what: str) -> float | None:
    """An optional number of days (blank: none); the registry checks its range."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise FormError(field, f"{what} must be a number of days (e.g. 7) or blank for none, got {text!r}") from None


def metric_edit_form(form: dict[str, str]) -> dict[str, Any]:
    """The changes of the edit-a-metric form (kind, event types, direction, primary, guardrail and its
    margin, conversion window) as ``Registry.update_metric`` takes them; the registry's rules check
    them (:func:`~battleground.experiment._registry_rules._normalize_metric`, the rules an added metric
    passes). :class:`FormError` names the field that is not even a number."""
    kind = form.get("kind", "").strip()
    if kind not in KINDS:
        raise FormError("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    margin_text = form.get("margin", "").strip()
    margin: float | None = None
    if margin_text:
        try:
            margin = float(margin_text)
        except ValueError:
            raise FormError("margin", f"the margin must be a number (e.g. 0.02 for 2 % of control), "
                                      f"got {margin_text!r}") from None
    unit = form.get("margin_unit", "relative")
    if unit not in ("relative", "absolute"):
        raise FormError("margin", f"the margin is relative or absolute, got {unit!r}")
    return {
        "name": form.get("name", "").strip(), "kind": kind, "numerator": form.get("numerator", "").strip(),
        "denominator": form.get("denominator", "").strip() or None,
        "direction": "decrease" if form.get("direction") == "decrease" else "increase",
        "primary": bool(form.get("primary")), "guardrail": bool(form.get("guardrail")),
        "margin": margin, "margin_relative": unit == "relative",
        "conversion_window_days": _days_field(form.get("window", ""), "window", "the conversion window"),
    }


# a metric rule (its name, lower case, as the registry raises it) → the field of the edit-a-metric form
_METRIC_RULE_FIELDS = (
    ("unique metric names", "name"), ("metric names non-empty", "name"), ("metric name", "name"),
    ("primary", "primary"), ("kind", "kind"), ("denominator", "denominator"), ("numerator", "numerator"),
    ("direction", "direction"), ("conversion window", "window"),
)


def metric_error_field(exc: Exception) -> str:
    """The field of the edit-a-metric form a registry error concerns (margins: ``margin``)."""
    from battleground.experiment._records import MarginError

    if isinstance(exc, MarginError):
        return "margin"
    rule = (getattr(exc, "rule", None) or "").lower()
    for phrase, field in _METRIC_RULE_FIELDS:
        if phrase in rule:
            return field
    low = str(exc).lower()
    return "margin" if "margin" in low else "kind" if "cap" in low else "metric"


def _whole(text: str, field: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise FormError(field, f"{field} must be a whole number above 0, got {text!r}")
    return int(text)


def _design(text: str) -> dict[str, Any]:
    """The end conditions a design choice sets: ``fixed`` (one look at the end) or a sequential design
    of the registry's (its rule checks the name: :data:`~battleground.experiment._records.DESIGNS`)."""
    choice = text.strip()
    if not choice or choice == FIXED:
        return {"sequential": False, "design": None}
    return {"sequential": True, "design": choice}


def _mde(text: str) -> Any:
    """The planned relative MDE as a number when it reads as one; else the text as typed, so the
    registry's own rule names it."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def end_condition_form(form: dict[str, str]) -> dict[str, Any]:
    """The end-condition fields of a form as keyword arguments of ``Registry.set_end_conditions``."""
    return {**{k: _whole(form.get(k, ""), k) for k in ("target_sample_size", "max_duration_days")},
            **_design(form.get("design", "")), "mde": _mde(form.get("mde", ""))}


def _buckets(text: str) -> Any:
    """How many layer buckets to allocate: a whole number when it reads as one, else the text as
    typed, so the registry's rule (``check_layer_buckets``) names it."""
    text = text.strip()
    return None if not text else int(text) if text.isdigit() and text.isascii() else text


def placement_form(form: dict[str, str], *, create: bool) -> dict[str, Any]:
    """The project, layer and bucket range of a draft as ``Registry.create_experiment`` (``create``:
    also ``layer_buckets``, the registry allocates the lowest free range) or ``Registry.update`` take
    them. The range is passed as typed (``start-end``): the registry's rules parse and check it, and
    refuse an overlap with a running experiment of the layer naming both ranges and the free ones. A
    project's running holdout applies to every experiment of the project that starts while it runs."""
    project = form.get("project", "").strip() or None
    layer = form.get("layer", "").strip() or None
    rng = form.get("layer_range", "").strip() or None
    out: dict[str, Any] = {"project": project, "layer": layer, "layer_range": rng}
    if create:
        out["layer_buckets"] = _buckets(form.get("layer_buckets", ""))
    return out


def parse_experiment_form(form: dict[str, str]) -> dict[str, Any]:
    """The keyword arguments of ``Registry.create_experiment`` from the form; :class:`FormError` names
    the first bad field."""
    ends = end_condition_form(form)
    if not ends["sequential"]:
        ends = {k: v for k, v in ends.items() if k not in ("sequential", "design")}
    return {
        "name": form.get("name", ""), "hypothesis": form.get("hypothesis") or None,
        "description": form.get("description") or None, "owner": form.get("owner") or None,
        "variants": _variants(form.get("variants", "")), "metrics": _metrics(form.get("metrics", "")),
        "end_conditions": {k: v for k, v in ends.items() if v is not None} or None,
        **placement_form(form, create=True),
    }


@dataclass(frozen=True)
class PlanRequest:
    """The sample-size calculator's inputs as typed (query parameters of ``GET /experiments/new``)."""

    kind: str = "proportion"
    baseline: str = ""
    sd: str = ""
    mde: str = ""
    relative: bool = False
    arms: str = "2"

    @property
    def asked(self) -> bool:
        return bool(self.baseline.strip() or self.mde.strip() or self.sd.strip())


def _plan_number(text: str, field: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FormError(field, f"{what} must be a number, got {text.strip()!r}") from None


def plan_sample_size(ask: PlanRequest) -> "tuple[SampleSizeResult | None, dict[str, str]]":
    """Users per variant to detect ``mde`` (α = 0.05 split over the treatment arms, 80 % power), by
    ``battleground.stats.sample_size_proportions`` (a conversion rate) or ``sample_size_means`` (a
    mean with its per-user standard deviation); (None, {}) when nothing was asked, else errors by field
    (``plan-<field>``, or ``plan`` for the planner's own).

    Example:
        >>> plan, _ = plan_sample_size(PlanRequest(baseline="0.1", mde="0.01"))
        >>> plan.n_control_ceil
        14749
    """
    if not ask.asked:
        return None, {}
    from battleground.stats import StatsInputError, sample_size_means, sample_size_proportions

    try:
        arms = _whole(ask.arms, "arms") or 2
        mde = _plan_number(ask.mde, "mde", "the effect to detect")
        if ask.kind == "mean":
            base = _plan_number(ask.baseline, "baseline", "the baseline mean") if ask.baseline.strip() else None
            sd = _plan_number(ask.sd, "sd", "the standard deviation")
            plan = sample_size_means(mde, sd, baseline_mean=base, relative=ask.relative, n_arms=arms)
        elif ask.kind == "proportion":
            base = _plan_number(ask.baseline, "baseline", "the baseline conversion rate")
            plan = sample_size_proportions(base, mde, relative=ask.relative, n_arms=arms)
        else:
            raise FormError("kind", f"the calculator plans proportions or means, got {ask.kind!r}")
    except FormError as bad:
        return None, {f"plan-{bad.field}": str(bad)}
    except StatsInputError as bad:  # the planner's own message names the argument
        return None, {"plan": str(bad)}
    return plan, {}


_RULE_FIELDS = (
    # layers and projects (``_registry_rules.check_layer*``, the registry's overlap and allocation rules)
    ("needs a layer", "layer"), ("layer names", "layer"), ("layer name", "layer"),
    ("layer buckets", "layer_buckets"), ("a free range of the layer", "layer_buckets"),
    ("layer range", "layer_range"), ("own disjoint ranges", "layer_range"), ("owns one range", "layer_range"),
    ("project", "project"),
    ("group-sequential", "design"), ("design", "design"), ("mde", "mde"),
    ("target sample size", "target_sample_size"), ("maximum duration", "max_duration_days"),
)


def _field_of(message: str, rule: str | None = None) -> str:
    """Which form field a registry error concerns: by the broken rule's name when it has one, else by
    the words of its message (which name the rule and the value)."""
    if rule:
        for phrase, name in _RULE_FIELDS:
            if phrase in rule.lower():
                return name
    low = message.lower()
    for field, words in (
        ("design", ("design",)), ("mde", ("mde",)), ("metrics", ("margin",)),
        ("variants", ("variant", "weight", "control")), ("metrics", ("metric", "numerator", "denominator", "kind")),
        ("target_sample_size", ("target_sample_size", "sample size")), ("max_duration_days", ("duration",)),
        ("name", ("name",)),
    ):
        if any(w in low for w in words):
            return field
    return "form"


def error_field(exc: Exception) -> str:
    """The form field of a registry (or margin) error."""
    return _field_of(str(exc), getattr(exc, "rule", None))


def create_form_router(state: DashboardState) -> APIRouter:
    """Sign-in and the experiment forms over one :class:`DashboardState`."""
    from battleground.web._pages import templates

    router = APIRouter(include_in_schema=False)
    settings = state.settings
    tpl = templates()

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = state.sessions.of(request)
        return tpl.TemplateResponse(request, f"web/{name}", {
            "read_only": state.read_only, "user": session.actor if session else None,
            "csrf": session.csrf if session else "", "plotly": False, "nav": "experiments", **context,
        }, status_code=status)

    def signed_in(request: Request, form: dict[str, str] | None) -> Session:
        """The request's session, with a valid CSRF token when a form is given; else AuthFailure."""
        if state.read_only:
            check_token(None, None)  # raises the read-only 403
        session = state.sessions.of(request)
        if session is None:
            raise AuthFailure(401, "sign in with the API token first (/signin)")
        if form is not None and not csrf_ok(session, form.get("csrf")):
            raise AuthFailure(403, "the form's CSRF token is missing or stale: reload the page and try again")
        return session

    @router.get("/signin", response_class=HTMLResponse)
    def signin_page(request: Request) -> HTMLResponse:
        return render(request, "signin.html.j2", title="Sign in", errors={}, values={})

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        actor = " ".join(form.get("name", "").split())[:64] or "web"
        try:
            check_token(settings.api_token, f"Bearer {form.get('token', '')}", what="sign-ins")
        except AuthFailure as refused:
            return render(request, "signin.html.j2", status=refused.status, title="Sign in",
                          errors={"token": refused.message}, values={"name": actor})
        session = state.sessions.create(actor)
        response = RedirectResponse("/", status_code=303)
        state.sessions.set_cookie(response, session, secure=request.url.scheme == "https")
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        session = signed_in(request, await _form(request))
        state.sessions.drop(session)
        response = RedirectResponse("/", status_code=303)
        state.sessions.clear_cookie(response)
        return response

    def holdouts() -> list[Any]:
        """The running holdouts, one per project: an experiment of that project starts behind it."""
        return [r for r in state.registry.list("running") if r.is_holdout]

    def form_page(request: Request, status: int = 200, errors: dict[str, str] | None = None,
                  values: dict[str, str] | None = None, plan: Any = None,
                  calc: PlanRequest | None = None) -> HTMLResponse:
        return render(request, "experiment_form.html.j2", status=status, title="New experiment",
                      errors=errors or {}, values=values or {}, plan=plan, calc=calc or PlanRequest(),
                      designs=DESIGN_CHOICES, holdouts=holdouts())

    @router.get("/experiments/new", response_class=HTMLResponse)
    def new_page(request: Request, kind: str = "proportion", baseline: str = "", sd: str = "", mde: str = "",
                 relative: str = "", arms: str = "2") -> Response:
        if state.sessions.of(request) is None:
            return RedirectResponse("/signin", status_code=303)
        calc = PlanRequest(kind=kind[:20], baseline=baseline[:40], sd=sd[:40], mde=mde[:40],
                           relative=bool(relative), arms=arms[:6])
        values = {"variants": "control\ntreatment", "metrics": "conversion, proportion, purchase, primary"}
        plan, errors = plan_sample_size(calc)
        if plan is not None:
            values["target_sample_size"] = str(plan.n_control_ceil)
            if plan.relative_effect is not None:
                values["mde"] = f"{plan.relative_effect:.6g}"
            if plan.n_arms > 2:
                values["variants"] = "\n".join(["control", *(f"treatment-{i}" for i in range(1, plan.n_arms))])
            if plan.metric == "mean":
                values["metrics"] = "revenue, mean, purchase, primary"
        return form_page(request, errors=errors, values=values, plan=plan, calc=calc)

    @router.post("/experiments/new")
    async def create(request: Request) -> Response:
        form = await _form(request)
        session = signed_in(request, form)
        from battleground.experiment._records import MarginError
        from battleground.experiment.register import Registry, RegistryError

        try:
            kwargs = parse_experiment_form(form)
            registry: Registry = await run_in_threadpool(state.open_registry)  # the first one creates it
            record = await run_in_threadpool(lambda: registry.create_experiment(**kwargs, actor=session.actor))
        except FormError as bad:
            return form_page(request, 422, {bad.field: str(bad)}, form)
        except (RegistryError, MarginError) as bad:
            return form_page(request, 422, {error_field(bad): str(bad)}, form)
        return RedirectResponse(f"/experiments/{record.id}", status_code=303)

    async def transition(request: Request, key: str, action: str) -> Response:
        form = await _form(request)
        session = signed_in(request, form)
        registry = state.registry
        exp_id = (await run_in_threadpool(registry.get, check_key(key))).id
        # a broken rule (stop without a reason, start twice, ...) is a RegistryError: the 422 page says it
        if action == "stop":
            await run_in_threadpool(lambda: registry.stop(exp_id, form.get("reason", ""), actor=session.actor))
        else:
            method = getattr(registry, action)
            await run_in_threadpool(lambda: method(exp_id, actor=session.actor))
        return RedirectResponse(f"/experiments/{exp_id}", status_code=303)

    def edit_page(request: Request, record: Any, status: int = 200, errors: dict[str, str] | None = None,
                  values: dict[str, str] | None = None) -> HTMLResponse:
        lines = "\n".join(f"{v.name}: {v.weight:g}" for v in record.variants)
        ec = record.end_conditions
        return render(request, "experiment_edit.html.j2", status=status, title=f"Edit {record.name}",
                      exp=record, variant_lines=lines, errors=errors or {}, values=values or {},
                      designs=DESIGN_CHOICES, design=ec.design if ec.sequential else FIXED, holdouts=holdouts())

    @router.get("/experiments/{key}/edit", response_class=HTMLResponse)
    def edit(request: Request, key: str) -> Response:
        if state.sessions.of(request) is None:
            return RedirectResponse("/signin", status_code=303)
        return edit_page(request, state.registry.get(check_key(key)))

    @router.post("/experiments/{key}/edit/{part}")
    async def save(request: Request, key: str, part: str) -> Response:
        """One registry call per form, so an edit is all or nothing."""
        form = await _form(request)
        session = signed_in(request, form)
        from battleground.experiment._records import MarginError
        from battleground.experiment.register import RegistryError

        registry = state.registry
        record = await run_in_threadpool(registry.get, check_key(key))
        actor = session.actor
        try:
            if part == "details":
                def call() -> Any:
                    return registry.update(record.id, name=form.get("name", ""), actor=actor, **{
                        k: form.get(k) or None for k in ("hypothesis", "description", "owner")})
            elif part == "variants":
                variants = _variants(form.get("variants", ""))
                def call() -> Any:
                    return registry.set_variants(record.id, variants, actor=actor)
            elif part == "metric-add":
                metrics = _metrics(form.get("metrics", ""))
                if len(metrics) != 1:
                    raise FormError("metrics", "add one metric at a time")
                def call() -> Any:
                    return registry.add_metric(record.id, metrics[0], actor=actor)
            elif part == "metric-edit":
                changes = metric_edit_form(form)
                def call() -> Any:
                    return registry.update_metric(record.id, form.get("metric", ""), changes, actor=actor)
            elif part == "metric-remove":
                def call() -> Any:
                    return registry.remove_metric(record.id, form.get("metric", ""), actor=actor)
            elif part == "placement":
                placement = placement_form(form, create=False)
                def call() -> Any:
                    return registry.update(record.id, **placement, actor=actor)
            elif part == "end":
                ends = end_condition_form(form)
                def call() -> Any:
                    return registry.set_end_conditions(record.id, **ends, actor=actor)
            else:
                raise FormError("form", f"no such edit {part!r}")
            await run_in_threadpool(call)
        except FormError as bad:
            field = f"edit-{bad.field}" if part == "metric-edit" else bad.field
            return edit_page(request, record, 422, {field: str(bad)}, {**form, "part": part})
        except (RegistryError, MarginError, LookupError) as bad:
            field = ("metric" if part == "metric-remove" else "metrics" if part == "metric-add"
                     else f"edit-{metric_error_field(bad)}" if part == "metric-edit" else error_field(bad))
            return edit_page(request, record, 422, {field: str(bad)}, {**form, "part": part})
        return RedirectResponse(f"/experiments/{record.id}/edit", status_code=303)

    @router.post("/experiments/{key}/start")
    async def start(request: Request, key: str) -> Response:
        return await transition(request, key, "start")

    @router.post("/experiments/{key}/stop")
    async def stop(request: Request, key: str) -> Response:
        return await transition(request, key, "stop")

    @router.post("/experiments/{key}/archive")
    async def archive(request: Request, key: str) -> Response:
        return await transition(request, key, "archive")

    return router
