#!/usr/bin/env python3
"""Deterministic generator of a Dataiku-DSS-like DATA_DIR for backup benchmarks.

    gen_data.py DIR [--scale S] [--seed N]
        Create DIR (must not exist or be empty). Scale 1.0 is about 1 GiB in about
        20,000 files; everything scales linearly (with small minimums).

    gen_data.py --mutate DIR [--seed N] [--percent P]
        Apply one deterministic "day" of changes (default ~1% of the data): configs
        rewritten atomically, logs appended, a new job, a new model version derived
        from the latest one, rows edited in the middle of a few CSVs, a few files
        deleted. Each call is the next day (the day counter lives in DIR/.gen_state.json).

Python 3.9+ standard library only. Same seed + scale (+ same sequence of mutations)
gives byte-identical files, names and mtimes.
"""

import argparse
import json
import math
import os
import random
import sys
import time

KiB = 1 << 10
MiB = 1 << 20
BASE_EPOCH = 1_714_000_000  # mtimes are deterministic: BASE_EPOCH minus up to ~180 days
DAY = 86400
STATE_FILE = ".gen_state.json"

# Budgets at scale 1.0: (bytes, files). Total ~1.0 GiB, ~19,500 files.
BUDGET = {
    "projects": (45 * MiB, 7000),
    "csv": (310 * MiB, 300),
    "parquet": (160 * MiB, 150),
    "models_per_version": (85 * MiB, None),  # x 3 versions, shared content
    "jobs": (100 * MiB, 1000),  # jobs (x4 files each)
    "run": (20 * MiB, None),
    "code_env": (40 * MiB, 3600),  # per env, env_a and env_b
    "tmp": (20 * MiB, 250),
    "caches": (25 * MiB, 400),
}
N_PROJECTS = 40
MODEL_WEIGHTS = [1, 3, 6, 12]  # relative sizes of the 4 models
MODEL_VERSIONS = 3

WORDS = (
    "customer order product sales revenue forecast churn score model train test split feature "
    "target label region country city store channel campaign click session user account "
    "invoice payment refund shipment warehouse supplier inventory price discount margin cost "
    "quantity amount total average median count distinct window partition bucket sample "
    "dataset recipe scenario trigger step job activity flow zone pipeline notebook insight "
    "dashboard chart metric check webapp plugin connection schema column table query join "
    "filter group prepare pivot stack sort topn distinct sync export import python sql spark "
    "hive impala pandas numpy sklearn xgboost lightgbm keras tensor vector matrix embedding "
    "cluster node worker executor memory driver container image kubernetes docker gateway "
    "monday tuesday weekly daily hourly monthly quarterly annual fiscal budget plan actual "
    "alpha beta gamma delta epsilon north south east west central premium standard basic "
    "gold silver bronze active inactive pending closed open failed success running done"
).split()
FIRST = ("Alice Bob Carol David Emma Farid Grace Hugo Ines Jules Karim Lea Marc Nora Omar "
         "Paula Quentin Rosa Sami Tara Ugo Vera Wen Xavier Yara Zoe").split()
LAST = ("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
        "Lefebvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard Andre Mercier "
        "Smith Johnson Brown Taylor Miller Wilson Moore Clark Lewis Walker").split()
CITIES = ("Paris Lyon Marseille Lille Nantes Bordeaux Toulouse Nice Berlin Munich Hamburg Madrid "
          "Barcelona Milan Rome London Manchester Dublin Amsterdam Brussels Zurich Geneva "
          "NewYork Boston Chicago Austin Seattle Denver Toronto Montreal Tokyo Singapore").split()
COUNTRIES = "FR DE ES IT GB IE NL BE CH US CA JP SG".split()
STATUSES = "NEW PAID SHIPPED DELIVERED RETURNED CANCELLED PENDING".split()
LEVELS = ["INFO"] * 12 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"]
LOGGERS = ("dku.flow.activity dku.jobs dku.flow.sql dku.flow.python dku.datasets.fs "
           "dku.scheduler dku.ml.train dku.tags dku.security.auth dku.fsproviders "
           "dku.connections.sql.provider dku.flow.jobrunner dku.kernels dku.backend").split()
PACKAGES = ("numpy pandas scipy scikit_learn matplotlib seaborn requests urllib3 certifi idna "
            "charset_normalizer six python_dateutil pytz tzdata joblib threadpoolctl xgboost "
            "lightgbm statsmodels patsy sqlalchemy psycopg2 pyarrow fsspec s3fs boto3 botocore "
            "jmespath s3transfer jinja2 markupsafe click flask werkzeug itsdangerous tornado "
            "ipykernel ipython traitlets jupyter_client jupyter_core pyzmq decorator pygments "
            "prompt_toolkit wcwidth parso jedi pexpect ptyprocess pickleshare backcall "
            "packaging pyparsing setuptools pip wheel cloudpickle dataiku_api_client "
            "openpyxl et_xmlfile xlrd tabulate tqdm").split()


def rng_for(seed, *parts):
    """Independent deterministic stream per category (string seeds are hashed with SHA-512)."""
    return random.Random(":".join([str(seed)] + [str(p) for p in parts]))


def distribute(rng, total, n, sigma=1.0, minimum=64):
    """n lognormal sizes summing to ~total (each >= minimum)."""
    if n <= 0:
        return []
    raw = [rng.lognormvariate(0.0, sigma) for _ in range(n)]
    s = sum(raw)
    return [max(minimum, int(total * r / s)) for r in raw]


class Pools:
    """Pre-generated vocabulary from which compressible text is assembled quickly."""

    def __init__(self, seed):
        r = rng_for(seed, "pools")
        self.idents = sorted({"_".join(r.sample(WORDS, r.randint(1, 3))) for _ in range(3000)})
        self.messages = []
        for _ in range(600):
            words = " ".join(r.choices(WORDS, k=r.randint(3, 9)))
            tmpl = r.choice([
                "Computing {w} for partition {n}",
                "{w} done in {n} ms",
                "Read {n} rows from {w}",
                "Wrote {n} records into {w}",
                "Starting {w} (attempt {n})",
                "Checking {w}: {n} values ok",
                "Running activity {w}_{n}",
                "Allocated {n} MB for {w}",
            ])
            self.messages.append(tmpl.replace("{w}", words))
        self.code_lines = []
        for _ in range(4000):
            a, b, c = r.choice(self.idents), r.choice(self.idents), r.choice(self.idents)
            self.code_lines.append(r.choice([
                f"    {a} = {b}({c}, axis={r.randint(0, 3)})",
                f"    if {a} is None:\n        raise ValueError(\"{b} must not be None\")",
                f"    for {a} in {b}.{c}():",
                f"        {a}.append({b}[{r.randint(0, 99)}])",
                f"    return {a}.{b}({c})",
                f"    # {' '.join(r.choices(WORDS, k=r.randint(4, 12)))}",
                f"    {a}: dict = {{\"{b}\": {r.randint(0, 9999)}, \"{c}\": {r.random():.4f}}}",
                f"    logger.debug(\"{a} %s\", {b})",
                f"    {a} = self._{b}.get(\"{c}\", {r.randint(0, 100)})",
                f"    with open({a}, \"rb\") as {b}:",
                f"        {a} += {b} * {r.random():.6f}",
            ]))
        self.sql_lines = []
        for _ in range(800):
            a, b = r.choice(self.idents), r.choice(self.idents)
            self.sql_lines.append(r.choice([
                f"SELECT \"{a}\", SUM(\"{b}\") AS \"{b}_sum\"",
                f"  FROM \"${{projectKey}}_{a}\"",
                f"  LEFT JOIN \"{b}\" ON \"{a}\".\"id\" = \"{b}\".\"{a}_id\"",
                f" WHERE \"{a}\" > {r.randint(0, 5000)} AND \"{b}\" IS NOT NULL",
                f" GROUP BY \"{a}\"",
                f" ORDER BY \"{b}\" DESC",
            ]))
        days = []
        for d in range(400):
            t = time.gmtime(BASE_EPOCH - 400 * DAY + d * DAY)
            days.append(time.strftime("%Y-%m-%d", t))
        self.days = days
        self.hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        self.names = [f"{f} {l}" for f in FIRST for l in LAST]
        self.products = sorted({f"{r.choice(WORDS)}-{r.choice(WORDS)}-{r.randint(1, 99)}"
                                for _ in range(1500)})
        # Low-entropy filler for binary formats (dictionary-encoded-looking bytes).
        filler = bytearray()
        while len(filler) < 2 * MiB:
            kind = r.random()
            if kind < 0.35:
                filler += bytes(r.randint(64, 2048))
            elif kind < 0.7:
                alphabet = bytes(r.sample(range(256), 4))
                filler += bytes(r.choices(alphabet, k=r.randint(256, 4096)))
            else:
                filler += self.csv_text(r, 4096, 0)
        self.filler = bytes(filler)

    def words(self, r, n):
        return " ".join(r.choices(WORDS, k=n))

    def csv_text(self, r, nbytes, start_id):
        """CSV rows (no header) totalling ~nbytes; ~4-6x compressible."""
        out = []
        size = 0
        rid = start_id
        while size < nbytes:
            k = max(8, min(20000, (nbytes - size) // 150 + 1))
            names = r.choices(self.names, k=k)
            cities = r.choices(CITIES, k=k)
            countries = r.choices(COUNTRIES, k=k)
            prods = r.choices(self.products, k=k)
            days = r.choices(self.days, k=k)
            stats = r.choices(STATUSES, k=k)
            qty = r.choices(range(1, 50), k=k)
            cents = r.choices(range(199, 99999), k=k)
            notes = r.choices(self.messages, k=k)
            rows = [
                f"{rid + i},{days[i]},{names[i]},{cities[i]},{countries[i]},{prods[i]},"
                f"{qty[i]},{cents[i] / 100:.2f},{qty[i] * cents[i] / 100:.2f},{stats[i]},"
                f"\"{notes[i]}\"\n"
                for i in range(k)
            ]
            rid += k
            chunk = "".join(rows)
            out.append(chunk)
            size += len(chunk)
        return "".join(out).encode()

    def log_text(self, r, nbytes, t0, thread="MainThread"):
        """DSS-style log lines totalling ~nbytes, timestamps increasing from t0."""
        out = []
        size = 0
        t_ms = t0 * 1000
        pid = r.randint(1000, 60000)
        while size < nbytes:
            k = max(8, min(20000, (nbytes - size) // 140 + 1))
            msgs = r.choices(self.messages, k=k)
            lvls = r.choices(LEVELS, k=k)
            lgs = r.choices(LOGGERS, k=k)
            nums = r.choices(range(100000), k=k)
            steps = r.choices(range(1, 900), k=k)
            lines = []
            hms, days, ndays = self.hms, self.days, len(self.days)
            for i in range(k):
                t_ms += steps[i]
                s, ms = divmod(t_ms, 1000)
                d, s = divmod(s, DAY)
                lines.append(f"[{days[d % ndays]} {hms[s]},{ms:03d}] [{pid}/{thread}] "
                             f"[{lvls[i]}] [{lgs[i]}] - {msgs[i].replace('{n}', str(nums[i]))}\n")
            chunk = "".join(lines)
            out.append(chunk)
            size += len(chunk)
        return "".join(out).encode()

    def python_text(self, r, nbytes):
        head = (f'"""{self.words(r, 12)}."""\nimport logging\nimport os\n\n'
                f'logger = logging.getLogger(__name__)\n\n')
        parts = [head]
        size = len(head)
        while size < nbytes:
            body = "\n".join(r.choices(self.code_lines,
                                         k=r.randint(2, max(2, min(20, (nbytes - size) // 45)))))
            fn = (f"\ndef {r.choice(self.idents)}({r.choice(self.idents)}, "
                  f"{r.choice(self.idents)}=None):\n    \"\"\"{self.words(r, 8)}.\"\"\"\n{body}\n")
            parts.append(fn)
            size += len(fn)
        return "".join(parts).encode()

    def sql_text(self, r, nbytes):
        parts, size = [], 0
        while size < nbytes:
            stmt = "\n".join(r.choices(self.sql_lines, k=r.randint(4, 10))) + ";\n\n"
            parts.append(stmt)
            size += len(stmt)
        return "".join(parts).encode()

    def json_obj(self, r, nbytes, base=None):
        obj = dict(base or {})
        items = []
        obj["params"] = items
        size = len(json.dumps(obj))
        while size < nbytes:
            it = {
                "name": r.choice(self.idents),
                "type": r.choice(["string", "bigint", "double", "boolean", "date", "array"]),
                "enabled": r.random() < 0.8,
                "value": r.choice([r.randint(0, 10**6), round(r.random(), 5),
                                   self.words(r, r.randint(1, 6))]),
            }
            items.append(it)
            size += 95 + len(it["name"]) + len(str(it["value"])) + len(it["type"])
        return obj

    def binary(self, r, nbytes, random_fraction):
        """Mix of random blocks and low-entropy filler: compresses ~1/(random_fraction+...)."""
        out = bytearray()
        flen = len(self.filler)
        while len(out) < nbytes:
            blk = r.randint(2 * KiB, 16 * KiB)
            if r.random() < random_fraction:
                out += r.randbytes(blk)
            else:
                off = r.randrange(0, flen - blk)
                out += self.filler[off:off + blk]
        del out[nbytes:]
        return bytes(out)


class Writer:
    def __init__(self, root):
        self.root = root
        self.dirs = set()
        self.files = 0
        self.bytes = 0

    def path(self, rel):
        return os.path.join(self.root, rel)

    def write(self, rel, data, mtime, mode=None):
        p = self.path(rel)
        d = os.path.dirname(p)
        if d not in self.dirs:
            os.makedirs(d, exist_ok=True)
            self.dirs.add(d)
        if isinstance(data, str):
            data = data.encode()
        with open(p, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(p, mode)
        os.utime(p, (mtime, mtime))
        self.files += 1
        self.bytes += len(data)

    def json(self, rel, obj, mtime):
        self.write(rel, json.dumps(obj, indent=2, sort_keys=True) + "\n", mtime)


def old_mtime(r):
    return BASE_EPOCH - r.randrange(180 * DAY)


def project_keys(seed, scale):
    r = rng_for(seed, "project-keys")
    n = max(1, round(N_PROJECTS * scale))
    keys = []
    while len(keys) < n:
        k = "_".join(w.upper() for w in r.sample(WORDS, 2))
        if k not in keys:
            keys.append(k)
    return keys


# ----------------------------------------------------------------------------------------
# generation, one function per top-level folder


def gen_root(w, pools, seed, scale):
    r = rng_for(seed, "root")
    w.json("dss-version.json", {
        "product_version": "13.2.0",
        "product_commitid": "%040x" % r.getrandbits(160),
        "conf_version": "13200",
    }, BASE_EPOCH - 200 * DAY)
    w.write("install.ini", "[general]\nnodetype = design\n\n[server]\nport = 11000\n"
            "privileged_port = false\n\n[javaopts]\nbackend.xmx = 8g\n", BASE_EPOCH - 200 * DAY)
    w.write("bin/dss", """#!/bin/bash -e
# Dataiku DSS control script (benchmark stand-in)
DIP_HOME="$(cd "$(dirname "$0")/.." && pwd -P)"
export DIP_HOME
. "$DIP_HOME/bin/env-default.sh"
case "$1" in
  start|stop|restart|status) exec "$DKUINSTALLDIR/scripts/dss" "$@" ;;
  *) echo "Usage: $0 (start|stop|restart|status)" >&2; exit 1 ;;
esac
""", BASE_EPOCH - 200 * DAY, mode=0o755)
    w.write("bin/env-default.sh", "export DKUINSTALLDIR=/opt/dataiku-dss-13.2.0\n"
            "export DKUJAVABIN=/usr/bin/java\nexport DKUPYTHONBIN=\"$DIP_HOME/pyenv/bin/python\"\n",
            BASE_EPOCH - 200 * DAY)


def gen_config(w, pools, seed, scale):
    r = rng_for(seed, "config")
    names = ["general-settings", "connections", "users", "public-apikeys", "variables",
             "license", "clusters", "code-envs-settings", "notifications", "scheduler",
             "webapps", "containerized-execution", "workspace-settings", "dashboards-settings",
             "meanings", "lab-settings", "git-settings", "personal-api-keys", "ldap",
             "sso", "azure-ad", "oauth2", "llm-settings", "infrastructure"]
    for n in names:
        w.json(f"config/{n}.json", pools.json_obj(r, r.randint(300, 12 * KiB),
                                                   {"kind": n, "version": r.randint(1, 40)}),
               old_mtime(r))
    for i in range(8):
        w.json(f"config/plugins/{r.choice(pools.idents)}-{i}/settings.json",
               pools.json_obj(r, r.randint(200, 2000), {"plugin": i}), old_mtime(r))
    for i in range(6):
        w.json(f"config/projects/p{i}/permissions.json",
               pools.json_obj(r, 400, {"owner": r.choice(pools.names)}), old_mtime(r))
    w.write("config/dip.properties", "".join(f"dku.{a}={b}\n" for a, b in zip(
        r.choices(pools.idents, k=30), r.choices(range(1000), k=30))), old_mtime(r))


def gen_projects(w, pools, seed, scale):
    total_bytes, total_files = BUDGET["projects"]
    keys = project_keys(seed, scale)
    per_project = max(20, round(total_files * scale / len(keys)))
    bytes_pp = total_bytes * scale / len(keys)
    for key in keys:
        r = rng_for(seed, "project", key)
        sizes = distribute(r, bytes_pp, per_project, sigma=1.1, minimum=120)
        w.json(f"projects/{key}/params.json", {
            "projectKey": key, "name": key.replace("_", " ").title(),
            "owner": r.choice(pools.names), "projectStatus": r.choice(["Draft", "Production"]),
            "tags": r.sample(WORDS, 3), "creationTag": {"lastModifiedOn": old_mtime(r) * 1000},
        }, old_mtime(r))
        for i, size in enumerate(sizes[1:]):
            kind = r.random()
            name = f"{r.choice(pools.idents)}_{i}"
            mt = old_mtime(r)
            if kind < 0.30:
                w.json(f"projects/{key}/recipes/{name}.json",
                       pools.json_obj(r, size, {"type": r.choice(["python", "sql", "join",
                                                                 "grouping", "prepare", "sync"]),
                                                "inputs": r.sample(pools.idents, 2),
                                                "outputs": r.sample(pools.idents, 1)}), mt)
            elif kind < 0.42:
                w.write(f"projects/{key}/recipes/{name}.py", pools.python_text(r, size), mt)
            elif kind < 0.50:
                w.write(f"projects/{key}/recipes/{name}.sql", pools.sql_text(r, size), mt)
            elif kind < 0.70:
                w.json(f"projects/{key}/datasets/{name}.json",
                       pools.json_obj(r, size, {"type": r.choice(["Filesystem", "PostgreSQL",
                                                                 "S3", "HDFS"]),
                                                "managed": r.random() < 0.7}), mt)
            elif kind < 0.80:
                cells = [{"cell_type": "code", "execution_count": j, "metadata": {},
                          "outputs": [], "source": [ln + "\n" for ln in
                                                    r.choices(pools.code_lines, k=6)]}
                         for j in range(max(1, size // 700))]
                w.json(f"projects/{key}/ipython_notebooks/{name}.ipynb",
                       {"cells": cells, "metadata": {"kernelspec": {"name": "py-dku-venv"}},
                        "nbformat": 4, "nbformat_minor": 5}, mt)
            elif kind < 0.86:
                w.write(f"projects/{key}/wiki/articles/{name}.md",
                        "# " + pools.words(r, 5) + "\n\n" + "\n\n".join(
                            pools.words(r, 40) for _ in range(max(1, size // 300))) + "\n", mt)
            elif kind < 0.92:
                w.json(f"projects/{key}/scenarios/{name}.json",
                       pools.json_obj(r, size, {"active": r.random() < 0.5,
                                                "triggers": [{"type": "temporal"}]}), mt)
            elif kind < 0.96:
                w.json(f"projects/{key}/dashboards/{name}.json", pools.json_obj(r, size), mt)
            else:
                w.json(f"projects/{key}/saved_models/{name}.json",
                       pools.json_obj(r, size, {"miniTask": {"taskType": "PREDICTION"}}), mt)


def csv_header():
    return "id,event_date,customer,city,country,product,quantity,unit_price,total,status,note\n"


def gen_managed_datasets(w, pools, seed, scale):
    keys = project_keys(seed, scale)
    # CSV, partitioned by day: managed_datasets/<KEY>.<name>/<yyyy-mm-dd>/out-s0.csv
    cbytes, cfiles = BUDGET["csv"]
    r = rng_for(seed, "csv")
    nfiles = max(2, round(cfiles * scale))
    nds = max(1, nfiles // 10)
    sizes = distribute(r, cbytes * scale, nfiles, sigma=0.6, minimum=4 * KiB)
    rid = 0
    for i, size in enumerate(sizes):
        ds = i % nds
        key = keys[ds % len(keys)]
        part = pools.days[-1 - (i // nds)]
        data = csv_header().encode() + pools.csv_text(r, size, rid)
        rid += size // 100
        w.write(f"managed_datasets/{key}.orders_{ds}/{part}/out-s0.csv", data, old_mtime(r))
    # Parquet-like: managed_datasets/<KEY>.<name>_parquet/part-r-000NN.parquet
    pbytes, pfiles = BUDGET["parquet"]
    r = rng_for(seed, "parquet")
    nfiles = max(2, round(pfiles * scale))
    nds = max(1, nfiles // 10)
    sizes = distribute(r, pbytes * scale, nfiles, sigma=0.5, minimum=8 * KiB)
    for i, size in enumerate(sizes):
        ds = i % nds
        key = keys[(ds + 3) % len(keys)]
        body = pools.binary(r, size - 8, random_fraction=0.30)
        w.write(f"managed_datasets/{key}.features_{ds}_parquet/part-r-{i // nds:05d}.parquet",
                b"PAR1" + body + b"PAR1", old_mtime(r))
        w.write(f"managed_datasets/{key}.features_{ds}_parquet/.part-r-{i // nds:05d}"
                f".parquet.crc", r.randbytes(8 + size // 65536), old_mtime(r))


def model_payload(pools, r, size):
    """A pickled-model stand-in: mostly random 'weights' (compress poorly)."""
    return b"\x80\x04\x95" + pools.binary(r, max(64, size - 3), random_fraction=0.85)


def apply_edits(r, data, frac):
    """Change ~frac of the bytes at a few random places (overwrite/insert/delete)."""
    data = bytearray(data)
    n_sites = 2 + len(data) // (8 * MiB)
    per_site = max(16, int(len(data) * frac / n_sites))
    sites = sorted((r.randrange(len(data)) for _ in range(n_sites)), reverse=True)
    for pos in sites:
        n = max(1, int(per_site * r.uniform(0.5, 1.5)))
        op = r.choice(["overwrite", "insert", "delete", "replace"])
        if op == "overwrite":
            data[pos:pos + n] = r.randbytes(len(data[pos:pos + n]))
        elif op == "insert":
            data[pos:pos] = r.randbytes(n)
        elif op == "delete":
            del data[pos:pos + n]
        else:
            data[pos:pos + n] = r.randbytes(n + r.randint(-n // 2, n // 2))
    return bytes(data)


def write_model_version(w, pools, r, mdir, version, payload, mt):
    vdir = f"{mdir}/versions/{version}"
    w.write(f"{vdir}/clf.pkl", payload, mt)
    for name in ["rmodeling_params", "core_params", "actual_params", "user_meta",
                 "split/split", "perf", "iperf"]:
        w.json(f"{vdir}/{name}.json",
               pools.json_obj(r, r.randint(400, 6000), {"version": version}), mt)
    w.write(f"{vdir}/predicted.csv", csv_header().encode() +
            pools.csv_text(r, max(1024, len(payload) // 25), 0), mt)


def gen_saved_models(w, pools, seed, scale):
    keys = project_keys(seed, scale)
    per_version = BUDGET["models_per_version"][0] * scale
    total_w = sum(MODEL_WEIGHTS)
    for m, weight in enumerate(MODEL_WEIGHTS):
        r = rng_for(seed, "model", m)
        key = keys[m % len(keys)]
        model_id = "".join(r.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=8))
        mdir = f"saved_models/{key}/{model_id}"
        size = max(16 * KiB, int(per_version * weight / total_w))
        payload = model_payload(pools, r, size)
        version = (BASE_EPOCH - 120 * DAY) * 1000 + r.randrange(DAY * 1000)
        for v in range(MODEL_VERSIONS):
            if v:
                payload = apply_edits(r, payload, frac=r.uniform(0.02, 0.05))
                version += r.randint(5, 30) * DAY * 1000
            write_model_version(w, pools, r, mdir, version, payload, version // 1000)


def write_job(w, pools, r, key, job_id, size, t0):
    jdir = f"jobs/{key}/{job_id}"
    w.json(f"{jdir}/job.json", {"projectKey": key, "id": job_id, "state": r.choice(
        ["DONE", "DONE", "DONE", "FAILED", "ABORTED"]), "initiator": r.choice(pools.names),
        "startTime": t0 * 1000}, t0 + 60)
    act = f"compute_{r.choice(pools.idents)}_NP"
    w.write(f"{jdir}/output.log", pools.log_text(r, int(size * 0.7), t0), t0 + 60)
    w.write(f"{jdir}/activities/{act}/log.txt",
            pools.log_text(r, int(size * 0.3), t0, thread="activity"), t0 + 60)
    w.json(f"{jdir}/activities/{act}/state.json", {"state": "DONE", "rows": r.randint(0, 10**7)},
           t0 + 60)


def gen_jobs_and_run(w, pools, seed, scale):
    keys = project_keys(seed, scale)
    jbytes, jcount = BUDGET["jobs"]
    r = rng_for(seed, "jobs")
    n = max(2, round(jcount * scale))
    sizes = distribute(r, jbytes * scale, n, sigma=1.2, minimum=2 * KiB)
    for i, size in enumerate(sizes):
        key = r.choice(keys)
        t0 = old_mtime(r)
        tm = time.gmtime(t0)
        job_id = (f"Build_{r.choice(pools.idents)[:20]}_{time.strftime('%Y-%m-%dT%H-%M-%S', tm)}"
                  f".{r.randrange(1000):03d}")
        write_job(w, pools, r, key, job_id, size, t0)
    # run/: live and rotated logs of the DSS processes
    r = rng_for(seed, "run")
    rbytes = BUDGET["run"][0] * scale
    logs = ["backend.log", "backend.log.1", "backend.log.2", "backend.log.3", "ipython.log",
            "frontend.log", "governserver.log", "eventserver.log", "supervisord.log",
            "nginx/access.log", "nginx/error.log", "fek.log"]
    sizes = distribute(r, rbytes, len(logs), sigma=0.8, minimum=KiB)
    for name, size in zip(logs, sizes):
        w.write(f"run/{name}", pools.log_text(r, size, BASE_EPOCH - 3 * DAY), BASE_EPOCH)
    w.write("run/backend.pid", f"{r.randint(1000, 60000)}\n", BASE_EPOCH)
    w.write("run/supervisord.pid", f"{r.randint(1000, 60000)}\n", BASE_EPOCH)


def gen_code_envs(w, pools, seed, scale):
    ebytes, efiles = BUDGET["code_env"]
    r = rng_for(seed, "code-envs")
    nfiles = max(20, round(efiles * scale))
    sizes = distribute(r, ebytes * scale, nfiles, sigma=1.3, minimum=64)
    npk = max(3, min(len(PACKAGES), nfiles // 40))
    pkgs = PACKAGES[:npk]
    sp = "env/lib/python3.11/site-packages"
    entries = []  # (relpath, data, mode)
    for i, pkg in enumerate(pkgs):
        ver = f"{r.randint(0, 3)}.{r.randint(0, 30)}.{r.randint(0, 9)}"
        info = f"{sp}/{pkg}-{ver}.dist-info"
        entries.append((f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {pkg}\nVersion: {ver}\n"
                        f"Summary: {pools.words(r, 10)}\n", 0o644))
        entries.append((f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n", 0o644))
        entries.append((f"{info}/top_level.txt", pkg + "\n", 0o644))
    for i, size in enumerate(sizes):
        pkg = pkgs[i % npk]
        sub = "/".join(r.sample(pools.idents, r.randint(0, 2)))
        base = f"{sp}/{pkg}/{sub + '/' if sub else ''}{r.choice(pools.idents)}_{i}"
        if r.random() < 0.07:
            entries.append((base + ".cpython-311-x86_64-linux-gnu.so",
                            b"\x7fELF\x02\x01\x01" + pools.binary(r, size * 4, 0.5), 0o755))
        else:
            entries.append((base + ".py", pools.python_text(r, size), 0o644))
    reqs = "".join(f"{p}=={r.randint(0, 3)}.{r.randint(0, 30)}\n" for p in pkgs)
    for env in ("env_a", "env_b"):
        er = rng_for(seed, "code-env", env)
        root = f"code-envs/python/{env}"
        mt = old_mtime(er)
        w.json(f"{root}/desc.json", {"envName": env, "pythonInterpreter": "PYTHON311",
                                     "installCorePackages": True, "owner": "admin"}, mt)
        w.write(f"{root}/spec/requirements.txt", reqs, mt)
        w.write(f"{root}/env/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\n"
                "version = 3.11.7\n", mt)
        w.write(f"{root}/env/bin/python3.11", b"\x7fELF" + er.randbytes(2048), mt, mode=0o755)
        for link in ("python", "python3"):
            p = w.path(f"{root}/env/bin/{link}")
            os.symlink("python3.11", p)
            os.utime(p, (mt, mt), follow_symlinks=False)
        for rel, data, mode in entries:
            if env == "env_b" and er.random() < 0.05:
                # ~5% of the files differ (other package versions, patched modules)
                if er.random() < 0.2:
                    continue  # missing in env_b
                data = pools.python_text(er, max(64, len(data))) if rel.endswith(".py") \
                    else pools.binary(er, len(data), 0.5)
            w.write(f"{root}/{rel}", data, mt, mode=mode)
        if env == "env_b":
            w.write(f"{root}/{sp}/extra_pkg/__init__.py", pools.python_text(er, 3000), mt)


def gen_tmp_caches(w, pools, seed, scale):
    for area in ("tmp", "caches"):
        b, n = BUDGET[area]
        r = rng_for(seed, area)
        nf = max(3, round(n * scale))
        for i, size in enumerate(distribute(r, b * scale, nf, sigma=1.0, minimum=128)):
            if area == "tmp":
                rel = f"tmp/{r.choice(['exports', 'uploads', 'jupyter', 'sql'])}/" \
                      f"{r.getrandbits(64):016x}.tmp"
            else:
                rel = f"caches/{r.choice(['datasets-samples', 'flow-graph', 'ml', 'catalog'])}/" \
                      f"{r.choice(pools.idents)}/{i:05d}.bin"
            data = pools.csv_text(r, size, 0) if r.random() < 0.5 else pools.binary(r, size, 0.6)
            w.write(rel, data, old_mtime(r))


def generate(root, scale, seed):
    if os.path.exists(root) and os.listdir(root):
        sys.exit(f"gen_data: {root} exists and is not empty")
    os.makedirs(root, exist_ok=True)
    t = time.time()
    pools = Pools(seed)
    w = Writer(root)
    for fn in (gen_root, gen_config, gen_projects, gen_managed_datasets, gen_saved_models,
               gen_jobs_and_run, gen_code_envs, gen_tmp_caches):
        fn(w, pools, seed, scale)
    w.json(STATE_FILE, {"seed": seed, "scale": scale, "day": 0}, BASE_EPOCH)
    print(f"gen_data: {w.files} files, {w.bytes / MiB:.1f} MiB in {root} "
          f"(scale {scale}, seed {seed}, {time.time() - t:.1f}s)")


# ----------------------------------------------------------------------------------------
# mutation: one "day" of activity


def all_files(root, prefix):
    out = []
    base = os.path.join(root, prefix)
    for d, dirs, files in os.walk(base):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    return out


def mutate(root, seed, percent):
    state_path = os.path.join(root, STATE_FILE)
    with open(state_path) as f:
        state = json.load(f)
    day = state["day"] + 1
    scale = state["scale"]
    r = rng_for(seed, "mutate", day)
    pools = Pools(state["seed"])
    w = Writer(root)
    now = BASE_EPOCH + day * DAY
    p = percent / 100.0
    total = sum(os.path.getsize(os.path.join(root, f)) for f in all_files(root, "."))
    stats = {"day": day, "rewritten": 0, "appended_bytes": 0, "new_files": 0,
             "new_bytes": 0, "edited_csv": 0, "deleted": 0}

    def mt():
        return now + r.randrange(DAY // 2)

    def atomic(rel, data):
        path = os.path.join(root, rel)
        tmp = path + ".tmp~"
        with open(tmp, "wb") as f:
            f.write(data)
        m = mt()
        os.utime(tmp, (m, m))
        os.replace(tmp, path)
        stats["rewritten"] += 1

    # 1. configs and project files rewritten atomically (JSON edited in place of a value)
    configs = [f for f in all_files(root, "config") if f.endswith(".json")]
    projects = [f for f in all_files(root, "projects") if f.endswith(".json")]
    picks = r.sample(configs, max(1, min(len(configs), round(len(configs) * p * 10))))
    picks += r.sample(projects, max(1, min(len(projects), round(len(projects) * p * 2))))
    for rel in picks:
        with open(os.path.join(root, rel)) as f:
            obj = json.load(f)
        if isinstance(obj, dict):
            obj["lastModifiedOn"] = now * 1000
            obj.setdefault("params", [])
            if isinstance(obj["params"], list):
                obj["params"].append({"name": r.choice(pools.idents), "value": r.randint(0, 99)})
        atomic(rel, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    # 2. logs appended
    for rel in ["run/backend.log", "run/ipython.log", "run/nginx/access.log", "run/fek.log"]:
        path = os.path.join(root, rel)
        if os.path.exists(path):
            data = pools.log_text(r, max(512, int(total * p * 0.05)), now)
            with open(path, "ab") as f:
                f.write(data)
            m = mt()
            os.utime(path, (m, m))
            stats["appended_bytes"] += len(data)

    # 3. a new job
    keys = sorted(os.listdir(os.path.join(root, "projects")))
    key = r.choice(keys)
    job_id = f"Build_daily_{day:03d}_{time.strftime('%Y-%m-%dT%H-%M-%S', time.gmtime(now))}.000"
    write_job(w, pools, r, key, job_id, max(4 * KiB, int(total * p * 0.15)), now)

    # 4. a new version of one model, derived from its latest version
    models = sorted(os.path.dirname(os.path.dirname(f)) for f in all_files(root, "saved_models")
                    if f.endswith("clf.pkl"))
    models = sorted(set(os.path.dirname(m) for m in models))
    if models:
        mdir = r.choice(models)
        latest = max(os.listdir(os.path.join(root, mdir, "versions")), key=int)
        with open(os.path.join(root, mdir, "versions", latest, "clf.pkl"), "rb") as f:
            payload = apply_edits(r, f.read(), frac=r.uniform(0.02, 0.05))
        version = int(latest) + r.randint(1, 5) * DAY * 1000
        write_model_version(w, pools, r, mdir, version, payload, mt())

    # 5. rows changed in the middle of a few CSVs (rewritten in place, same inode)
    csvs = [f for f in all_files(root, "managed_datasets") if f.endswith(".csv")]
    for rel in r.sample(csvs, max(1, min(len(csvs), round(len(csvs) * p * 3)))):
        path = os.path.join(root, rel)
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        n = len(lines)
        if n < 4:
            continue
        start = r.randrange(n // 4, max(n // 4 + 1, 3 * n // 4))
        for i in range(start, min(n - 1, start + max(3, int(n * p)))):
            cols = lines[i].split(b",")
            if len(cols) > 9:
                cols[9] = r.choice(STATUSES).encode()
                cols[6] = str(r.randint(1, 99)).encode()
                lines[i] = b",".join(cols)
        data = b"\n".join(lines)
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
        m = mt()
        os.utime(path, (m, m))
        stats["edited_csv"] += 1

    # 6. a few new tmp files, a few deletions (tmp, caches, the oldest job)
    for i in range(max(1, round(5 * scale * 10))):
        w.write(f"tmp/exports/day{day:03d}_{i}.tmp", pools.csv_text(r, r.randint(KiB, 64 * KiB), 0),
                mt())
    tmp = all_files(root, "tmp")
    caches = all_files(root, "caches")
    doomed = r.sample(tmp, min(len(tmp), max(1, round(len(tmp) * p * 3))))
    doomed += r.sample(caches, min(len(caches), max(1, round(len(caches) * p * 2))))
    for rel in doomed:
        os.remove(os.path.join(root, rel))
        stats["deleted"] += 1
    jobs = []
    for k in sorted(os.listdir(os.path.join(root, "jobs"))):
        for j in sorted(os.listdir(os.path.join(root, "jobs", k))):
            jobs.append((os.path.getmtime(os.path.join(root, "jobs", k, j, "job.json")), k, j))
    if len(jobs) > 2:
        _, k, j = min(jobs)
        for rel in all_files(root, f"jobs/{k}/{j}"):
            os.remove(os.path.join(root, rel))
            stats["deleted"] += 1
        for d, _dirs, _files in sorted(os.walk(os.path.join(root, "jobs", k, j)),
                                       key=lambda x: -len(x[0])):
            os.rmdir(d)

    stats["new_files"] = w.files
    stats["new_bytes"] = w.bytes
    state["day"] = day
    atomic(STATE_FILE, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
    stats["rewritten"] -= 1
    print("gen_data --mutate: " + ", ".join(f"{k} {v}" for k, v in stats.items()) +
          f" (data was {total / MiB:.1f} MiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mutate", action="store_true", help="apply one day of changes to DIR")
    ap.add_argument("--percent", type=float, default=1.0, help="size of a --mutate day, in %%")
    a = ap.parse_args()
    if a.mutate:
        mutate(a.dir, a.seed, a.percent)
    else:
        if a.scale <= 0:
            ap.error("--scale must be > 0")
        generate(a.dir, a.scale, a.seed)


if __name__ == "__main__":
    main()
