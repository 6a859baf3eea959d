"""Write side: batch update/read, PATCH, lifecycle rules, tasks with associations and the
unique dedupe key, HubSpot's multi-status error shape."""

from __future__ import annotations

import pytest
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.objects.tasks import (
    ApiException as TaskApiException,
)
from hubspot.crm.objects.tasks import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectInputForCreate,
)
from sandbox_support import Http

TO_CONTACT = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]


def _update(client, rows: dict[str, dict[str, str]]):
    inputs = [SimplePublicObjectBatchInput(id=i, properties=p) for i, p in rows.items()]
    return client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))


def _stage_history(http: Http, contact_id: str) -> list[dict]:
    body = http.get(f"/crm/v3/objects/contacts/{contact_id}", propertiesWithHistory="lifecyclestage").json()
    return body["propertiesWithHistory"]["lifecyclestage"]


def test_batch_update_through_the_sdk_moves_stage_and_stamps_the_clock(hubspot_client, http: Http, clock):
    clock.advance(3600)
    result = _update(hubspot_client, {"1": {"lifecyclestage": "salesqualifiedlead", "handoff_score": 87}})
    assert result.status == "COMPLETE"
    assert type(result).__name__ == "BatchResponseSimplePublicObject"  # 200, not the 207 with-errors shape
    [row] = result.results
    assert row.id == "1" and row.properties["lifecyclestage"] == "salesqualifiedlead"
    assert row.properties["handoff_score"] == "87"  # every property value is a string
    body = http.get("/crm/v3/objects/contacts/1", properties="lifecyclestage,lastmodifieddate").json()
    assert body["updatedAt"] == "2026-01-01T01:00:00.000Z"
    assert body["properties"]["lastmodifieddate"] == "2026-01-01T01:00:00.000Z"
    newest = _stage_history(http, "1")[0]
    assert newest == {"value": "salesqualifiedlead", "timestamp": "2026-01-01T01:00:00.000Z",
                      "sourceType": "INTEGRATION", "sourceId": "handoff-crm-sandbox", "updatedByUserId": None}
    assert len(_stage_history(http, "1")) == 3


def test_updated_contact_shows_up_in_an_incremental_search(hubspot_client, http: Http, clock):
    clock.advance(10)
    _update(hubspot_client, {"4": {"jobtitle": "CTO"}})
    body = http.post("/crm/v3/objects/contacts/search", {"filterGroups": [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GT", "value": str(int(clock() * 1000) - 1)}]}]}).json()
    assert [r["id"] for r in body["results"]] == ["4"]


def test_lifecyclestage_only_moves_forward(http: Http):
    response = http.post("/crm/v3/objects/contacts/batch/update", {"inputs": [
        {"id": "2", "properties": {"lifecyclestage": "subscriber"}},
        {"id": "3", "properties": {"lifecyclestage": "marketingqualifiedlead"}},
    ]})
    assert response.status_code == 207
    body = response.json()
    assert [r["id"] for r in body["results"]] == ["3"]
    assert body["numErrors"] == 1
    [error] = body["errors"]
    assert error["category"] == "VALIDATION_ERROR" and error["context"] == {"ids": ["2"]}
    assert error["errors"][0]["context"] == {"propertyName": ["lifecyclestage"]}
    assert http.get("/crm/v3/objects/contacts/2", properties="lifecyclestage").json()["properties"][
        "lifecyclestage"] == "lead"
    assert len(_stage_history(http, "2")) == 2  # a rejected change leaves no history


def test_clear_then_set_moves_backward(http: Http):
    assert http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "subscriber"}}).status_code == 400
    assert http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": ""}}).status_code == 200
    response = http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "subscriber"}})
    assert response.status_code == 200
    assert response.json()["properties"]["lifecyclestage"] == "subscriber"
    assert [h["value"] for h in _stage_history(http, "2")] == ["subscriber", "", "lead", "subscriber"]


def test_other_is_outside_the_order(http: Http):
    assert http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "other"}}).status_code == 200
    assert http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "lead"}}).status_code == 200


def test_multi_status_per_row_errors(http: Http):
    response = http.post("/crm/v3/objects/contacts/batch/update", {"inputs": [
        {"id": "1", "properties": {"lifecyclestage": "opportunity"}},
        {"id": "2", "properties": {"lifecyclestage": "hot_lead"}},
        {"id": "3", "properties": {"hubspot_owner_id": "3"}},            # archived owner
        {"id": "4", "properties": {"hubspot_owner_id": "424242"}},       # no such owner
        {"id": "26", "properties": {"jobtitle": "x"}},                   # archived contact
        {"id": "999999", "properties": {"jobtitle": "x"}},               # unknown contact
        {"id": "5", "properties": {"hubspot_owner_id": "2"}, "objectWriteTraceId": "trace-5"},
    ]})
    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    assert sorted(r["id"] for r in body["results"]) == ["1", "5"]
    assert [r.get("objectWriteTraceId") for r in body["results"] if r["id"] == "5"] == ["trace-5"]
    errors = body["errors"]
    assert body["numErrors"] == len(errors) == 4
    not_found = [e for e in errors if e["category"] == "OBJECT_NOT_FOUND"]
    assert len(not_found) == 1 and not_found[0]["context"] == {"ids": ["26", "999999"]}
    codes = {e["context"]["ids"][0]: e["errors"][0]["code"] for e in errors if e["category"] == "VALIDATION_ERROR"}
    assert codes == {"2": "INVALID_OPTION", "3": "INVALID_OWNER_ID", "4": "INVALID_OWNER_ID"}
    for error in errors:
        assert error["status"] == "error" and error["message"] and error["links"] == {}


def test_batch_limits(http: Http):
    too_many = {"inputs": [{"id": str(i), "properties": {"jobtitle": "x"}} for i in range(101)]}
    response = http.post("/crm/v3/objects/contacts/batch/update", too_many)
    assert response.status_code == 400 and response.json()["category"] == "VALIDATION_ERROR"
    duplicated = {"inputs": [{"id": "1", "properties": {}}, {"id": "1", "properties": {}}]}
    assert http.post("/crm/v3/objects/contacts/batch/update", duplicated).status_code == 400
    assert http.post("/crm/v3/objects/contacts/batch/read", {"inputs": [{"id": "1"}] * 101}).status_code == 400


def test_read_only_property_rejected(http: Http):
    response = http.patch("/crm/v3/objects/contacts/1", {"properties": {"lastmodifieddate": "2020-01-01"}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "READ_ONLY_VALUE"


def test_batch_read_through_the_sdk(hubspot_client):
    result = hubspot_client.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id="3"), SimplePublicObjectId(id="4"), SimplePublicObjectId(id="888")],
        properties=["email", "lifecyclestage"], properties_with_history=["lifecyclestage"]))
    assert sorted(r.id for r in result.results) == ["3", "4"]
    assert result.errors[0].category == "OBJECT_NOT_FOUND" and result.errors[0].context == {"ids": ["888"]}
    assert result.results[0].properties_with_history["lifecyclestage"][0].value == "lead"


def test_batch_read_by_email(http: Http):
    body = http.post("/crm/v3/objects/contacts/batch/read", {
        "idProperty": "email", "properties": ["email"],
        "inputs": [{"id": "person9@example.com"}, {"id": "person10@example.com"}]}).json()
    assert sorted(r["id"] for r in body["results"]) == ["10", "9"]


def _task(key: str, contact_id: str = "1", owner: str = "1") -> dict:
    return {"properties": {"hs_task_subject": f"Follow up {key}", "hs_task_body": "New SQL",
                           "hs_timestamp": "1767312000000", "hs_task_status": "NOT_STARTED",
                           "hs_task_priority": "HIGH", "hs_task_type": "CALL", "hubspot_owner_id": owner,
                           "handoff_dedupe_key": key},
            "associations": [{"to": {"id": contact_id}, "types": TO_CONTACT}]}


def test_create_task_through_the_sdk_with_association(hubspot_client, http: Http):
    created = hubspot_client.crm.objects.tasks.basic_api.create(
        SimplePublicObjectInputForCreate(**_task("sql-1-2026-01-01")))
    assert created.properties["hs_timestamp"] == "2026-01-02T00:00:00.000Z"  # epoch ms stored as ISO
    assert created.properties["hs_createdate"] == "2026-01-01T00:00:00.000Z"
    task = http.get(f"/crm/v3/objects/tasks/{created.id}", associations="contacts",
                    properties="handoff_dedupe_key").json()
    assert task["associations"] == {"contacts": {"results": [{"id": "1", "type": "task_to_contact"}]}}
    back = http.get("/crm/v3/objects/contacts/1", associations="tasks").json()
    assert back["associations"]["tasks"]["results"] == [{"id": created.id, "type": "contact_to_task"}]


def test_batch_create_tasks_through_the_sdk(hubspot_client):
    inputs = [SimplePublicObjectBatchInputForCreate(object_write_trace_id=f"t{i}", **_task(f"k{i}", str(i)))
              for i in (1, 2, 3)]
    result = hubspot_client.crm.objects.tasks.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    assert result.status == "COMPLETE"
    by_trace = {r.object_write_trace_id: r.properties["handoff_dedupe_key"] for r in result.results}
    assert by_trace == {"t1": "k1", "t2": "k2", "t3": "k3"}


def test_batch_create_per_row_errors(http: Http):
    rows = [_task("ok-1"), _task("bad-owner", owner="424242"), _task("bad-contact", contact_id="999999"),
            {**_task("no-ts"), "properties": {"hs_task_subject": "x", "handoff_dedupe_key": "no-ts"}}]
    rows[1]["objectWriteTraceId"] = "row-1"
    response = http.post("/crm/v3/objects/tasks/batch/create", {"inputs": rows})
    assert response.status_code == 207
    body = response.json()
    assert [r["properties"]["handoff_dedupe_key"] for r in body["results"]] == ["ok-1"]
    codes = sorted(e["errors"][0]["code"] for e in body["errors"])
    assert codes == ["ASSOCIATION_TARGET_NOT_FOUND", "INVALID_OWNER_ID", "REQUIRED_FIELD"]
    assert {"objectWriteTraceId": ["row-1"]} in [e["context"] for e in body["errors"]]


def test_dedupe_key_is_unique(hubspot_client, http: Http):
    first = http.post("/crm/v3/objects/tasks", _task("sql-7"))
    assert first.status_code == 201
    second = http.post("/crm/v3/objects/tasks", _task("sql-7"))
    assert second.status_code == 409
    body = second.json()
    assert body["status"] == "error" and body["category"] == "CONFLICT"
    assert f"Existing ID: {first.json()['id']}" in body["message"]
    # a batch containing a clash creates nothing
    clash = http.post("/crm/v3/objects/tasks/batch/create", {"inputs": [_task("fresh"), _task("sql-7")]})
    assert clash.status_code == 409
    within = http.post("/crm/v3/objects/tasks/batch/create", {"inputs": [_task("twin"), _task("twin")]})
    assert within.status_code == 409
    found = hubspot_client.crm.objects.tasks.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "handoff_dedupe_key", "operator": "IN",
                                     "values": ["sql-7", "fresh", "twin"]}]}],
        properties=["handoff_dedupe_key"]))
    assert found.total == 1 and found.results[0].properties["handoff_dedupe_key"] == "sql-7"
    with pytest.raises(TaskApiException) as excinfo:
        hubspot_client.crm.objects.tasks.basic_api.create(SimplePublicObjectInputForCreate(**_task("sql-7")))
    assert excinfo.value.status == 409


def test_archiving_a_task_frees_its_dedupe_key(http: Http):
    first = http.post("/crm/v3/objects/tasks", _task("again")).json()
    assert http.delete(f"/crm/v3/objects/tasks/{first['id']}").status_code == 204
    assert http.post("/crm/v3/objects/tasks", _task("again")).status_code == 201


def test_invalid_task_enum_and_association_type(http: Http):
    bad_status = _task("e1")
    bad_status["properties"]["hs_task_status"] = "DONE"
    assert http.post("/crm/v3/objects/tasks", bad_status).status_code == 400
    bad_type = _task("e2")
    bad_type["associations"][0]["types"] = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]
    response = http.post("/crm/v3/objects/tasks", bad_type)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "INVALID_ASSOCIATION_TYPE"
