"""Case metadata: cases/<area>/<id>.toml beside the probe <id>.cc, the
expected rows <id>.exp and the lab note <id>.md. The id and area come from
the path, so one id finds all four files."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import json
import re

from . import catalogue as catalogue_mod, inputs, kver, paths, tomlread

FLAVORS = ("host", "pidns", "userns")
MAX_TIMEOUT_S = 3600  # a case that needs more is a bug in the case (and the launcher counts ms in an int)

# Linux's capabilities (<linux/capability.h>, CAP_CHOWN=0 .. CAP_CHECKPOINT_RESTORE=40),
# spelt as kpc-launch's `caps` reports them (libcap's cap_to_name, upper case).
# A typo in requires.caps would skip its case forever ("needs capability
# CAP_SYS_ADMNI"); a new kernel capability is added here by hand (a test
# compares this list with the installed header).
CAPABILITIES = frozenset("""
    CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID
    CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW
    CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT
    CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD
    CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG
    CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE
""".split())
_KERNEL_REQUIREMENT = re.compile(r"^>=(\d+(\.\d+){0,2})$")
# Ids, areas and probe names end up in paths, run ids, TAP/JUnit names and
# table sections: plain names only.
_NAME = re.compile(r"^[a-z0-9_]+$")
RESERVED_ID = "area"   # cases/<area>/area.exp is not a case's table (kpc/tables.py AREA_FILE)

_TOP_KEYS = {"summary", "flavors", "variants", "timeout", "hang_ms", "hang_grace_ms", "exclusive", "slow",
             "under_runtimes", "runtime_workload", "probe", "args", "requires", "flavor_notes", "provenance", "lab",
             "catalogue"}
_REQUIRE_KEYS = {"root", "caps", "kconfig", "kernel", "files", "commands"}
_PROVENANCE_KEYS = {"man", "quote", "commits", "cve", "stories", "links"}
_LAB_KEYS = {"unit", "difficulty", "prerequisites", "variant", "flavor", "setup", "ask", "forms", "params"}
_PARAM_KEYS = {"arg", "choices", "default", "rows"}
DIFFICULTIES = ("easy", "moderate", "hard")
# The incidents cases cite (provenance.stories): one file beside the areas.
STORIES_FILE = "stories.toml"
_STORY_KEYS = {"title", "author", "publication", "year", "url", "summary", "note"}
_STORY_REQUIRED = ("title", "author", "publication", "year", "summary")


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


@dataclasses.dataclass(frozen=True)
class Story:
    """An incident of cases/stories.toml: a public write-up a case cites."""
    id: str
    title: str
    author: str
    publication: str
    year: int
    summary: str
    url: str = ""
    note: str = ""

    def citation(self) -> str:
        """'Author, "Title", Publication, Year, URL' (no URL when unknown)."""
        return f'{self.author}, "{self.title}", {self.publication}, {self.year}' + (f", {self.url}" if self.url else "")


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
    # after a hang, how long the launcher only aborts the run's FUSE
    # connections and lets the run end by itself before killing its tree
    hang_grace_ms: int = 0
    # Ids of the coverage catalogue's behaviours this case observes (kpc/catalogue.py; bench/coverage.py counts them)
    catalogue: list = dataclasses.field(default_factory=list)
    lab: Lab = dataclasses.field(default_factory=Lab)
    # provenance.stories resolved against cases/stories.toml, in the order given
    stories: list = dataclasses.field(default_factory=list)

    @property
    def timeout_ms(self) -> int:
        """What the launcher is given (load_case checks it is 1..3600000)."""
        return round(self.timeout_s * 1000)

    @property
    def source_path(self) -> str:
        return os.path.join(paths.CASES, self.area, self.probe + ".cc")

    @property
    def note_path(self) -> str:
        return os.path.join(paths.CASES, self.area, self.id + ".md")

    @property
    def table_path(self) -> str:
        return os.path.join(paths.EXPECTED, self.area, self.id + ".exp")

    def provenance_lines(self) -> list[str]:
        """'man: ...', 'commit: ...', 'story 002: <citation>', ... as every
        output shows provenance (explain, results file, reports, JUnit)."""
        p = self.provenance
        out = []
        for label, key in (("man", "man"), ("commit", "commits"), ("CVE", "cve"), ("story", "stories"),
                           ("link", "links")):
            if key == "stories":
                known = {s.id: s for s in self.stories}
                out += [f"story {i}: {known[i].citation()}" if i in known else f"story {i}"
                        for i in p.get(key, [])]
                continue
            out += [f"{label}: {item}" for item in p.get(key, [])]
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


def parse_kernel_requirement(text: str) -> tuple[int, ...]:
    """'>=5.3' -> (5, 3, 0); only a minimum is supported. The whole text
    must match ('>=5.x' is not 5.0)."""
    m = _KERNEL_REQUIREMENT.match(text.strip())
    if not m:
        raise ValueError(f"kernel requirement must look like '>=5.3' or '>=6.1.2', got '{text}'")
    return kver.parse(m.group(1))


def _check_limits(rel, data):
    """timeout (s) and hang_ms as the launcher needs them, checked here: a
    value the launcher refuses would fail the whole batch, every case."""
    if "timeout" in data:
        t = data["timeout"]
        if not (0 < t <= MAX_TIMEOUT_S and round(t * 1000) >= 1):  # nan compares false
            raise CaseError(f"{rel}: timeout must be seconds, more than 0 (at least 1 ms) and at most "
                            f"{MAX_TIMEOUT_S}; got {t}")
    timeout_ms = round(data.get("timeout", 10) * 1000)
    hang_ms = data.get("hang_ms", 1000)
    if not 0 < hang_ms <= timeout_ms:
        got = f"got {hang_ms}" if "hang_ms" in data else f"the default is {hang_ms}: set hang_ms"
        raise CaseError(f"{rel}: hang_ms must be more than 0 and at most the timeout ({timeout_ms} ms); {got}")
    grace = data.get("hang_grace_ms", 0)
    if not 0 <= grace <= min(timeout_ms, 120000):
        raise CaseError(f"{rel}: hang_grace_ms must be 0 to the timeout ({timeout_ms} ms, at most 120000); got {grace}")


def _check_names(rel, area, case_id, data, req):
    for what, name in (("area", area), ("case id", case_id), ("probe", data.get("probe", case_id))):
        if not _NAME.match(name):
            raise CaseError(f"{rel}: {what} '{name}' is not a plain name (a-z, 0-9, _)")
    if case_id == RESERVED_ID:
        raise CaseError(f"{rel}: '{RESERVED_ID}' cannot be a case id: cases/<area>/{RESERVED_ID}.exp holds the "
                        f"condition sets the area's tables share")
    bad = [c for c in req.caps if c not in CAPABILITIES]
    if bad:
        raise CaseError(f"{rel}: requires.caps: unknown capability {', '.join(repr(c) for c in bad)} "
                        f"(names as in capabilities(7), e.g. CAP_SYS_ADMIN)")


def read_toml(path: str) -> dict:
    """The metadata file's data (a dict), or CaseError naming the file.
    TOML is read with tomllib or, on Python < 3.11, tomli or toml
    (kpc/tomlread.py); the bundle's runner reads cases.json instead."""
    rel = os.path.relpath(path, paths.ROOT)
    try:
        return tomlread.loads(inputs.read_text(path))
    except inputs.InputFileError as e:
        raise CaseError(f"{e.where(rel)}: {e}") from None
    except tomlread.TOMLError as e:
        raise CaseError(f"{rel}: {e}") from None


def _check_catalogue(rel, ids):
    """A misspelt id would silently count for nothing (or for another
    behaviour): each must name a catalogue row, once."""
    unknown = catalogue_mod.unknown_ids(ids)
    if unknown:
        raise CaseError(f"{rel}: catalogue: unknown behaviour id {', '.join(repr(i) for i in unknown)} "
                        f"(ids such as 'S24', 'R06' from runner/kpc/catalogue.py)")
    if len(set(ids)) != len(ids):
        raise CaseError(f"{rel}: catalogue: an id is listed twice")


def stories_from_data(where: str, data: object) -> dict[str, Story]:
    """{id: Story} from the stories file's data (or a bundle's copy of it),
    every entry checked: CaseError naming WHERE otherwise."""
    if not isinstance(data, dict):
        raise CaseError(f"{where}: not a table of stories")
    out = {}
    for sid, entry in data.items():
        if not _NAME.match(sid):
            raise CaseError(f"{where}: story id '{sid}' is not a plain name (a-z, 0-9, _)")
        if not isinstance(entry, dict):
            raise CaseError(f"{where}: [{sid}] must be a table (title, author, publication, year, url, summary)")
        _unknown(where, f"[{sid}]", entry.keys(), _STORY_KEYS)
        missing = [k for k in _STORY_REQUIRED if k not in entry]
        if missing:
            raise CaseError(f"{where}: [{sid}] needs {', '.join(missing)}")
        for key in _STORY_KEYS - {"year"}:
            if key in entry:
                _check_type(where, f"{sid}.{key}", entry[key], "str")
        _check_type(where, f"{sid}.year", entry["year"], "int")
        url = entry.get("url", "")
        if url and not url.startswith("https://"):
            raise CaseError(f"{where}: [{sid}] url must be an https:// address or \"\" (none confirmed); got {url!r}")
        out[sid] = Story(id=sid, **entry)
    return out


def load_stories(cases_dir: str | None = None) -> dict[str, Story]:
    """{id: Story} of CASES_DIR/stories.toml; {} when there is none."""
    path = os.path.join(cases_dir or paths.CASES, STORIES_FILE)
    if not os.path.exists(path):
        return {}
    return stories_from_data(os.path.relpath(path, paths.ROOT), read_toml(path))


def load_case(path: str, stories: dict[str, Story] | None = None) -> Case:
    """The case of PATH (cases/<area>/<id>.toml); its provenance.stories are
    checked against STORIES, by default the stories file of its cases/."""
    if stories is None:
        stories = load_stories(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return case_from_data(path, read_toml(path), stories=stories)


def _resolve_stories(rel, ids, stories):
    unknown = [i for i in ids if i not in stories]
    if unknown:
        raise CaseError(f"{rel}: provenance.stories: unknown story {', '.join(repr(i) for i in unknown)} (the ids "
                        f"are the sections of cases/{STORIES_FILE}: {', '.join(sorted(stories)) or 'none'})")
    if len(set(ids)) != len(ids):
        raise CaseError(f"{rel}: provenance.stories: a story is listed twice")
    return [stories[i] for i in ids]


def case_from_data(path: str, data: dict, check_source: bool = True, stories: dict[str, Story] | None = None,
                   ) -> Case:
    """A Case from the metadata's data, checked as when read from PATH.
    CHECK_SOURCE: the probe's .cc must exist (not in a bundle, which
    carries the built probes and no sources). STORIES: {id: Story} the
    provenance.stories must name (None: none can be named)."""
    rel = os.path.relpath(path, paths.ROOT)
    area = os.path.basename(os.path.dirname(path))
    case_id = os.path.splitext(os.path.basename(path))[0]
    if not isinstance(data, dict):
        raise CaseError(f"{rel}: not a table of metadata")
    _unknown(rel, "the case", data.keys(), _TOP_KEYS)
    if "summary" not in data:
        raise CaseError(f"{rel}: missing 'summary'")
    for key, kind in (("summary", "str"), ("flavors", "strlist"), ("variants", "strlist"), ("timeout", "number"),
                      ("hang_ms", "int"), ("hang_grace_ms", "int"), ("exclusive", "bool"), ("slow", "str"),
                      ("under_runtimes", "bool"), ("runtime_workload", "bool"), ("probe", "str"), ("args", "strlist"),
                      ("requires", "table"), ("flavor_notes", "table"), ("provenance", "table"), ("lab", "table"),
                      ("catalogue", "strlist")):
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
    _check_limits(rel, data)
    _check_names(rel, area, case_id, data, req)
    _check_catalogue(rel, data.get("catalogue", []))

    prov = data.get("provenance", {})
    _unknown(rel, "[provenance]", prov.keys(), _PROVENANCE_KEYS)
    for key in _PROVENANCE_KEYS - {"quote"}:
        if key in prov:
            _check_type(rel, f"provenance.{key}", prov[key], "strlist")
    if "quote" in prov:  # one quote, or one per source: "page(N): words ... words"
        _check_type(rel, "provenance.quote", prov["quote"], "str or strlist")
    lab = _load_lab(rel, data.get("lab", {}), flavors, variants)
    cited = _resolve_stories(rel, prov.get("stories", []), stories or {})

    case = Case(id=case_id, area=area, summary=data["summary"], metadata_path=path,
                probe=data.get("probe", case_id), args=data.get("args", []), flavors=flavors,
                variants=variants, timeout_s=float(data.get("timeout", 10)), hang_ms=data.get("hang_ms", 1000),
                exclusive=data.get("exclusive", False), slow=data.get("slow", ""),
                under_runtimes=data.get("under_runtimes", False), runtime_workload=data.get("runtime_workload", False),
                hang_grace_ms=data.get("hang_grace_ms", 0),
                requires=req, flavor_notes=data.get("flavor_notes", {}),
                provenance=prov, catalogue=data.get("catalogue", []), lab=lab, stories=cited)
    if check_source and not os.path.exists(case.source_path):
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


PRECOMPILED = "cases.json"


def load_all(cases_dir: str | None = None) -> dict[str, Case]:
    """All cases, keyed by id, in (area, id) order. A directory holding
    cases.json (a bundle: `kpc bundle` precompiles the TOML, so the runner
    on a device under test needs no tomllib) is read from it."""
    cases_dir = cases_dir or paths.CASES
    if os.path.isfile(os.path.join(cases_dir, PRECOMPILED)):
        return load_precompiled(os.path.join(cases_dir, PRECOMPILED))
    if tomlread.parser() is None:
        raise CaseError(tomlread.missing_message())
    stories = load_stories(cases_dir)
    found = {}
    for area in _list(cases_dir):
        area_dir = os.path.join(cases_dir, area)
        if area in ("lib", "helpers") or not os.path.isdir(area_dir):
            continue
        for name in _list(area_dir):
            if not name.endswith(".toml"):
                continue
            case = load_case(os.path.join(area_dir, name), stories)
            if case.id in found:
                raise CaseError(f"case id '{case.id}' is defined twice: {found[case.id].metadata_path} and "
                                f"{case.metadata_path}")
            found[case.id] = case
    return found


def _list(directory):
    try:
        return inputs.list_dir(directory)
    except inputs.InputFileError as e:
        raise CaseError(f"{directory}: cannot read the cases: {e}"
                        + (" (KPC_CASES_DIR)" if os.environ.get("KPC_CASES_DIR") else "")) from None


def precompile(all_cases: dict[str, Case]) -> str:
    """The metadata of ALL_CASES as JSON text for a bundle: each case's
    TOML data (as read, so it is checked again when loaded) under its path
    relative to the cases directory."""
    out = []
    stories = {}
    for case in all_cases.values():
        rel = os.path.relpath(case.metadata_path, paths.CASES)
        out.append({"path": rel, "data": read_toml(case.metadata_path)})
        for s in case.stories:
            stories[s.id] = {k: v for k, v in dataclasses.asdict(s).items() if k != "id"}
    return json.dumps({"kpc_cases": 1, "cases": out, "stories": stories}, indent=0, sort_keys=True) + "\n"


def load_precompiled(path: str) -> dict:
    """Cases from a bundle's cases.json, checked like the TOML files (the
    probes' sources are not there)."""
    try:
        doc = json.loads(inputs.read_text(path))
    except inputs.InputFileError as e:
        raise CaseError(f"{e.where(path)}: {e}") from None
    except ValueError as e:
        raise CaseError(f"{path}: not JSON: {e}") from None
    entries = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise CaseError(f"{path}: not a kpc cases file (no 'cases' list)")
    found = {}
    base = os.path.dirname(path)
    stories = stories_from_data(path, doc.get("stories", {}))
    for entry in entries:
        rel = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(rel, str) or rel.count("/") != 1 or not rel.endswith(".toml") or ".." in rel:
            raise CaseError(f"{path}: an entry without a path of the form AREA/ID.toml")
        case = case_from_data(os.path.join(base, rel), entry.get("data"), check_source=False, stories=stories)
        if case.id in found:
            raise CaseError(f"{path}: case id '{case.id}' is defined twice")
        found[case.id] = case
    return dict(sorted(found.items(), key=lambda kv: (kv[1].area, kv[0])))


class SelectionError(ValueError):
    """--case/--area select nothing (nothing_selected), or a variant
    pattern matches none."""

    def __init__(self, message: str, nothing_selected: bool = False):
        super().__init__(message)
        self.nothing_selected = nothing_selected


def select(all_cases: dict[str, Case], patterns: list[str] | None, areas: list[str] | None) -> list[Case]:
    """The cases --case GLOB[:VARIANT] and --area select. A pattern with
    a variant part (a glob too) selects only the variants of its cases that
    match: such a case comes back with its variants narrowed (as a lab runs
    one), one without a matching variant is left out, and a pattern that
    names cases but none of their variants is bad input (SelectionError,
    one line). `./kpc run` and the bundle's runner both select with it."""
    chosen = []
    split = [(p, *p.split(":", 1)) if ":" in p else (p, p, None) for p in patterns or []]
    named_by = {p: [] for p, _, v in split if v is not None}   # variant pattern -> the cases its id part names
    used = set()                                              # variant patterns that selected a variant
    for case in all_cases.values():
        if areas and case.area not in areas:
            continue
        named = [(p, v) for p, c, v in split if fnmatch.fnmatchcase(case.id, c)]
        if patterns and not named:
            continue
        variants = []
        for x in case.variants:
            hits = [p for p, v in named if v is not None and fnmatch.fnmatchcase(x, v)]
            used.update(hits)
            if hits:
                variants.append(x)
        for p, v in named:
            if v is not None:
                named_by[p].append(case)
        if named and all(v is not None for _, v in named):   # only some variants
            if not variants:
                continue
            case = dataclasses.replace(case, variants=variants)
        chosen.append(case)
    for p, named in named_by.items():
        if named and p not in used:
            known = "; ".join(f"{c.id}: {', '.join(c.variants) or 'no variants'}" for c in named[:3])
            raise SelectionError(f"no variant matches --case {p} ({known})")
    if not chosen:
        what = " ".join(patterns or []) or "(all)"
        raise SelectionError(f"no case matches --case {what}" + (f" in area {','.join(areas)}" if areas else ""),
                             nothing_selected=True)
    return chosen
