"""The CRM v3 properties endpoints of the sandbox: list, read and create a property definition (the account's
property registry that writes are checked against)."""

from __future__ import annotations

import sqlite3
from typing import Any

from .http import ApiError, Response, json_response
from .model import (
    HUBSPOT_PROPERTIES,
    READ_ONLY_PROPERTIES,
    custom_property_problems,
    iso_from_ms,
    singular,
)


class PropertyEndpoints:
    """Mixed into SandboxApp (app.py)."""

    @staticmethod
    def _property_out(object_type: str, definition: dict[str, Any], hubspot_defined: bool) -> dict[str, Any]:
        return {"name": definition["name"], "label": definition.get("label") or definition["name"],
                "type": definition.get("type") or "string", "fieldType": definition.get("fieldType") or "text",
                "description": definition.get("description") or "",
                "groupName": definition.get("groupName") or f"{singular(object_type)}information",
                "options": definition.get("options") or [], "hasUniqueValue": bool(definition.get("hasUniqueValue")),
                "hubspotDefined": hubspot_defined, "formField": bool(definition.get("formField")),
                "calculated": False, "externalOptions": False, "hidden": False, "archived": False,
                "modificationMetadata": {"archivable": not hubspot_defined, "readOnlyDefinition": hubspot_defined,
                                         "readOnlyValue": definition["name"] in READ_ONLY_PROPERTIES},
                **({"createdAt": definition["createdAt"]} if definition.get("createdAt") else {})}

    def _all_properties(self, conn: sqlite3.Connection, object_type: str) -> dict[str, dict[str, Any]]:
        out = {name: self._property_out(object_type, {"name": name, "type": kind,
                                                      "fieldType": {"number": "number", "datetime": "date",
                                                                    "enumeration": "select"}.get(kind, "text")}, True)
               for name, kind in HUBSPOT_PROPERTIES[object_type].items()}
        for name, definition in self.store.property_definitions(conn, object_type).items():
            out[name] = self._property_out(object_type, definition, False)
        return out

    def list_properties(self, object_type: str) -> Response:
        with self.store.read() as conn:
            return json_response(200, {"results": list(self._all_properties(conn, object_type).values())})

    def get_property(self, object_type: str, name: str) -> Response:
        with self.store.read() as conn:
            found = self._all_properties(conn, object_type).get(name)
        if found is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} for object type {object_type}.")
        return json_response(200, found)

    def create_property(self, object_type: str, body: Any) -> Response:
        """``POST /crm/v3/properties/{objectType}``: a custom property, 201; 409 when the name is taken."""
        problems = custom_property_problems(body, object_type)
        if problems:
            raise ApiError(400, "VALIDATION_ERROR", "Property definition is not valid: " + "; ".join(problems))
        with self.store.write() as conn:
            if body["name"] in self.store.property_definitions(conn, object_type):
                raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{body['name']}' already exists.")
            definition = {**body, "createdAt": iso_from_ms(self.now_ms())}
            self.store.save_property(conn, object_type, definition)
        return json_response(201, self._property_out(object_type, definition, False))
