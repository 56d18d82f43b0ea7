"""Case metadata: cases/<area>/<id>.toml beside the probe <id>.cc and the
lab note <id>.md. The id and area come from the path, so one id finds all
three files (and the [<id>] section of results/expected/<area>.exp)."""

import dataclasses
import os
import tomllib

from . import kver, paths

FLAVORS = ("host", "pidns", "userns")

_TOP_KEYS = {"summary", "flavors", "variants", "timeout", "hang_ms", "exclusive", "slow", "under_runtimes",
             "runtime_workload", "probe", "args",
             "requires", "flavor_notes", "provenance", "lab"}
_REQUIRE_KEYS = {"root", "caps", "kconfig", "kernel", "files", "commands"}
_PROVENANCE_KEYS = {"man", "quote", "commits", "cve", "stories", "links"}
_LAB_KEYS = {"unit", "difficulty", "prerequisites", "variant", "flavor", "setup", "ask", "forms", "params"}
_PARAM_KEYS = {"arg", "choices", "default", "rows"}
DIFFICULTIES = ("easy", "moderate", "hard")


class CaseError(Exception):
    """Malformed or inconsistent case metadata; str() names the file."""


@dataclasses.dataclass
class Requires:
    root: bool = False
    caps: list = dataclasses.field(default_factory=list)
    kconfig: list = dataclasses.field(default_factory=list)
    kernel: str = ""  # e.g. ">=5.3"
    files: list = dataclasses.field(default_factory=list)
    commands: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Lab:
    """[lab]: how the case is taught (runner/kpc/lab.py uses it)."""
    unit: str = ""            # the course unit, e.g. "basics" (kpc list --course)
    difficulty: str = ""      # easy, moderate or hard
    prerequisites: list = dataclasses.field(default_factory=list)  # case ids to do first
    variant: str = ""         # the variant the lab's question is about
    flavor: str = ""          # the flavor the question is about (default host)
    setup: list = dataclasses.field(default_factory=list)  # numbered steps; {param} placeholders
    ask: list = dataclasses.field(default_factory=list)    # the keys to predict (default: every key)
    forms: dict = dataclasses.field(default_factory=dict)  # key -> answer form (values.FORMS)
    params: dict = dataclasses.field(default_factory=dict)  # name -> {arg, choices, default, rows}


@dataclasses.dataclass
class Case:
    id: str
    area: str
    summary: str
    metadata_path: str
    probe: str
    args: list
    flavors: list
    variants: list
    timeout_s: float
    hang_ms: int
    exclusive: bool
    requires: Requires
    flavor_notes: dict
    provenance: dict
    slow: str = ""  # why the case takes long; run only with --slow
    under_runtimes: bool = False  # run by --runtime (as the runtime's child)
    runtime_workload: bool = False  # under --runtime: the probe starts the runtime itself (KPC_RUNTIME_PREFIX)
    lab: Lab = dataclasses.field(default_factory=Lab)

    @property
    def source_path(self):
        return os.path.join(paths.CASES, self.area, self.probe + ".cc")

    @property
    def note_path(self):
        return os.path.join(paths.CASES, self.area, self.id + ".md")

    @property
    def table_path(self):
        return os.path.join(paths.EXPECTED, self.area + ".exp")

    def provenance_lines(self):
        p = self.provenance
        out = []
        for label, key in (("man", "man"), ("commit", "commits"), ("CVE", "cve"), ("story", "stories"),
                           ("link", "links")):
            for item in p.get(key, []):
                if key == "stories":
                    item = f"../shared/stories/{item}_*.txt"
                out.append(f"{label}: {item}")
        return out


def _check_type(path, where, value, kind):
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "strlist": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "str or strlist": isinstance(value, str) or (isinstance(value, list) and value
                                                      and all(isinstance(v, str) for v in value)),
        "table": isinstance(value, dict),
    }[kind]
    if not ok:
        raise CaseError(f"{path}: '{where}' must be {kind.replace('strlist', 'a list of strings')}")


def _unknown(path, where, keys, known):
    extra = sorted(set(keys) - known)
    if extra:
        raise CaseError(f"{path}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)} in {where} "
                        f"(known: {', '.join(sorted(known))})")


def parse_kernel_requirement(text):
    """'>=5.3' -> (5, 3, 0); only a minimum is supported."""
    text = text.strip()
    if not text.startswith(">="):
        raise ValueError(f"kernel requirement must look like '>=5.3', got '{text}'")
    return kver.parse(text[2:])


def load_case(path):
    rel = os.path.relpath(path, paths.ROOT)
    area = os.path.basename(os.path.dirname(path))
    case_id = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CaseError(f"{rel}: {e}") from None
    _unknown(rel, "the case", data.keys(), _TOP_KEYS)
    if "summary" not in data:
        raise CaseError(f"{rel}: missing 'summary'")
    for key, kind in (("summary", "str"), ("flavors", "strlist"), ("variants", "strlist"), ("timeout", "number"),
                      ("hang_ms", "int"), ("exclusive", "bool"), ("slow", "str"), ("under_runtimes", "bool"), ("runtime_workload", "bool"), ("probe", "str"), ("args", "strlist"),
                      ("requires", "table"), ("flavor_notes", "table"), ("provenance", "table"), ("lab", "table")):
        if key in data:
            _check_type(rel, key, data[key], kind)
    flavors = data.get("flavors", list(FLAVORS))
    bad = [f for f in flavors if f not in FLAVORS]
    if bad or not flavors:
        raise CaseError(f"{rel}: flavors must be a non-empty subset of {', '.join(FLAVORS)}; got {flavors}")
    for f in FLAVORS:
        if f not in flavors and f not in data.get("flavor_notes", {}):
            raise CaseError(f"{rel}: flavor '{f}' is left out without a reason: add flavor_notes.{f} = \"why\"")
    variants = data.get("variants", [])
    if len(set(variants)) != len(variants):
        raise CaseError(f"{rel}: duplicate variants")

    req_data = data.get("requires", {})
    _unknown(rel, "[requires]", req_data.keys(), _REQUIRE_KEYS)
    req = Requires()
    for key, kind in (("root", "bool"), ("caps", "strlist"), ("kconfig", "strlist"), ("kernel", "str"),
                      ("files", "strlist"), ("commands", "strlist")):
        if key in req_data:
            _check_type(rel, f"requires.{key}", req_data[key], kind)
            setattr(req, key, req_data[key])
    if req.kernel:
        try:
            parse_kernel_requirement(req.kernel)
        except ValueError as e:
            raise CaseError(f"{rel}: requires.kernel: {e}") from None

    prov = data.get("provenance", {})
    _unknown(rel, "[provenance]", prov.keys(), _PROVENANCE_KEYS)
    for key in _PROVENANCE_KEYS - {"quote"}:
        if key in prov:
            _check_type(rel, f"provenance.{key}", prov[key], "strlist")
    if "quote" in prov:  # one quote, or one per source: "page(N): words ... words"
        _check_type(rel, "provenance.quote", prov["quote"], "str or strlist")
    lab = _load_lab(rel, data.get("lab", {}), flavors, variants)

    case = Case(id=case_id, area=area, summary=data["summary"], metadata_path=path,
                probe=data.get("probe", case_id), args=data.get("args", []), flavors=flavors,
                variants=variants, timeout_s=float(data.get("timeout", 10)), hang_ms=data.get("hang_ms", 1000),
                exclusive=data.get("exclusive", False), slow=data.get("slow", ""), under_runtimes=data.get("under_runtimes", False),
                runtime_workload=data.get("runtime_workload", False), requires=req, flavor_notes=data.get("flavor_notes", {}),
                provenance=prov, lab=lab)
    if not os.path.exists(case.source_path):
        raise CaseError(f"{rel}: probe source {os.path.relpath(case.source_path, paths.ROOT)} does not exist")
    return case


def _load_lab(rel, data, flavors, variants):
    """[lab], checked for shape; what the values mean (units, forms,
    prerequisites that exist) is checked by `kpc check` (kpc/lab.py)."""
    _unknown(rel, "[lab]", data.keys(), _LAB_KEYS)
    for key, kind in (("unit", "str"), ("difficulty", "str"), ("prerequisites", "strlist"), ("variant", "str"),
                      ("flavor", "str"), ("setup", "strlist"), ("ask", "strlist"), ("forms", "table"),
                      ("params", "table")):
        if key in data:
            _check_type(rel, f"lab.{key}", data[key], kind)
    lab = Lab(**data)
    if lab.difficulty and lab.difficulty not in DIFFICULTIES:
        raise CaseError(f"{rel}: lab.difficulty must be one of {', '.join(DIFFICULTIES)}; got '{lab.difficulty}'")
    if lab.variant and lab.variant not in variants:
        raise CaseError(f"{rel}: lab.variant '{lab.variant}' is not a variant of this case "
                        f"({', '.join(variants) or 'it has none'})")
    if lab.flavor and lab.flavor not in flavors:
        raise CaseError(f"{rel}: lab.flavor '{lab.flavor}' is not a flavor of this case ({', '.join(flavors)})")
    for key, form in lab.forms.items():
        _check_type(rel, f"lab.forms.{key}", form, "str")
    for name, param in lab.params.items():
        where = f"lab.params.{name}"
        _check_type(rel, where, param, "table")
        _unknown(rel, f"[{where}]", param.keys(), _PARAM_KEYS)
        missing = sorted(_PARAM_KEYS - set(param))
        if missing:
            raise CaseError(f"{rel}: {where} needs {', '.join(missing)}")
        for key, kind in (("arg", "str"), ("choices", "strlist"), ("default", "str"), ("rows", "table")):
            _check_type(rel, f"{where}.{key}", param[key], kind)
        if param["default"] not in param["choices"]:
            raise CaseError(f"{rel}: {where}.default must be one of its choices")
        for key, template in param["rows"].items():
            _check_type(rel, f"{where}.rows.{key}", template, "str")
    return lab


def load_all(cases_dir=None):
    """All cases, keyed by id, in (area, id) order."""
    cases_dir = cases_dir or paths.CASES
    found = {}
    for area in sorted(os.listdir(cases_dir)):
        area_dir = os.path.join(cases_dir, area)
        if area in ("lib", "helpers") or not os.path.isdir(area_dir):
            continue
        for name in sorted(os.listdir(area_dir)):
            if not name.endswith(".toml"):
                continue
            case = load_case(os.path.join(area_dir, name))
            if case.id in found:
                raise CaseError(f"case id '{case.id}' is defined twice: {found[case.id].metadata_path} and "
                                f"{case.metadata_path}")
            found[case.id] = case
    return found
