"""Validates FHIR resources with fhir.resources (its FHIR 4.3 R4B models), a validator vitalsd did not write.

Usage: validate_fhir.py FILE
FILE holds a JSON array of {"name": ..., "resource": {...}}. Prints a JSON array of
{"name": ..., "ok": true|false, "error": "..."} in the same order and exits 0 when it could check them all.

fhir.resources checks structure, types and required elements; it does not check value-set codes,
LOINC or UCUM codes, or references: the Swift tests check those against the specification.
"""
import importlib
import json
import sys


def model(resource_type):
    module = importlib.import_module("fhir.resources.R4B." + resource_type.lower())
    return getattr(module, resource_type)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = json.load(f)
    results = []
    for item in items:
        resource = item["resource"]
        try:
            model(resource["resourceType"]).model_validate(resource)
            results.append({"name": item["name"], "ok": True, "error": ""})
        except (Exception, KeyError) as e:  # an unknown resourceType inside a Bundle raises KeyError
            results.append({"name": item["name"], "ok": False, "error": str(e)[:2000]})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
