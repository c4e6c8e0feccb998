"""Validates OpenLineage events (one JSON object per line in the file named by argv[1])
against the OpenLineage JSON schema kept beside this script, and each facet against the
schema its `_schemaURL` names. Prints one line per problem and exits 1 if there is any."""
import json
import pathlib
import sys

import jsonschema
import referencing

here = pathlib.Path(__file__).parent
schemas = {}
for path in [here / "OpenLineage.json", *sorted((here / "facets").glob("*.json"))]:
    doc = json.loads(path.read_text())
    schemas[doc["$id"]] = doc
registry = referencing.Registry().with_resources(
    (uri, referencing.Resource.from_contents(doc)) for uri, doc in schemas.items()
)
core = schemas["https://openlineage.io/spec/2-0-2/OpenLineage.json"]
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validator(schema):
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=checker)


def facets_of(event):
    """(where, facets map) for every facet map of an event."""
    yield "run.facets", event["run"].get("facets", {})
    yield "job.facets", event["job"].get("facets", {})
    for kind in ("inputs", "outputs"):
        for i, d in enumerate(event.get(kind, [])):
            yield f"{kind}[{i}].facets", d.get("facets", {})
            for extra in ("inputFacets", "outputFacets"):
                if extra in d:
                    yield f"{kind}[{i}].{extra}", d[extra]


problems = []
lines = [l for l in pathlib.Path(sys.argv[1]).read_text().splitlines() if l.strip()]
for n, line in enumerate(lines, 1):
    event = json.loads(line)
    errors = list(validator(core).iter_errors(event))
    if errors:
        # The event schema is a oneOf: name the error that best explains the mismatch.
        best = jsonschema.exceptions.best_match(errors)
        problems.append(f"event {n}: {best.json_path}: {best.message[:300]}")
    if "run" not in event:
        problems.append(f"event {n}: not a run event")
        continue
    for where, facets in facets_of(event):
        for key, facet in facets.items():
            url = facet.get("_schemaURL", "")
            doc = schemas.get(url.split("#")[0])
            if doc is None:
                problems.append(f"event {n}: {where}.{key}: no schema kept for {url!r}")
                continue
            if url.split("#", 1)[-1] != f"/$defs/{url.split('/')[-1].split('.json')[0]}":
                problems.append(f"event {n}: {where}.{key}: _schemaURL {url!r} names no facet definition")
            # A facet file's top level describes the facets map holding it, by key.
            if key not in doc.get("properties", {}):
                problems.append(f"event {n}: {where}.{key}: the schema {url!r} defines another key")
            for e in validator(doc).iter_errors({key: facet}):
                problems.append(f"event {n}: {where}.{key}: {e.json_path}: {e.message}")
for p in problems:
    print(p)
print(f"{len(lines)} event(s), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
