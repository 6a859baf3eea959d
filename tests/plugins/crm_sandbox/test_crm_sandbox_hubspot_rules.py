"""HubSpot's rules the sandbox holds a client to, driven through the official SDK where it has the call: the limits
table, batch read with history, the search rate limit, the property registry, merges, GDPR deletes, stage dates and
the state file's mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from handoff.crm_sandbox import create_handoff_properties, load_objects, start_sandbox
from handoff.crm_sandbox.limits import LIMITS
from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    PublicMergeInput,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.contacts import PublicObjectSearchRequest as ContactSearch
from hubspot.crm.objects.tasks import ApiException as TaskApiException
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate
from hubspot.crm.properties import ApiException as PropertyApiException
from hubspot.crm.properties import PropertyCreate
from sandbox_support import TOKEN, Http, contact, seed_small
from urllib3.util.retry import Retry


def _sdk(handle) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=handle.url, retry=Retry(0))


def test_the_limits_table_holds_hubspots_documented_numbers():
    values = {name: limit.value for name, limit in LIMITS.items()}
    assert values == {
        "requests_per_10s": 100, "requests_per_day": 250_000, "search_requests_per_second": 5, "search_page": 200,
        "search_results_per_query": 10_000, "search_filter_groups": 5, "search_filters_per_group": 6,
        "search_filters_total": 18, "batch_inputs": 100, "batch_read_inputs_with_history": 50, "list_page": 100,
        "list_page_with_history": 50, "association_batch_read_inputs": 1000, "owners_page": 500}
    assert all(limit.source.startswith("https://developers.hubspot.com/") for limit in LIMITS.values())


# ------------------------------------------------------------------------------------------------ batch read + history

def _batch_read(client, ids, history=None):
    body = BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=str(i)) for i in ids],
                                              properties=["lifecyclestage"], properties_with_history=history or [])
    return client.crm.contacts.batch_api.read(body)


def test_batch_read_with_history_takes_at_most_50_inputs(tmp_path, clock):
    state = tmp_path / "s.sqlite3"
    load_objects(state, "contacts", [contact(i) for i in range(1, 121)])
    with start_sandbox(state, token=TOKEN, rate_limit=None, clock=clock) as handle:
        sdk = _sdk(handle)
        fifty = _batch_read(sdk, range(1, 51), ["lifecyclestage"])
        assert len(fifty.results) == 50
        assert [h.value for h in fifty.results[0].properties_with_history["lifecyclestage"]] == ["lead", "subscriber"]
        with pytest.raises(ApiException) as excinfo:
            _batch_read(sdk, range(1, 52), ["lifecyclestage"])
        assert excinfo.value.status == 400
        assert "must not have more than 50 inputs; got 51" in excinfo.value.body
        assert len(_batch_read(sdk, range(1, 101)).results) == 100  # without history: 100
        with pytest.raises(ApiException) as excinfo:
            _batch_read(sdk, range(1, 102))
        assert excinfo.value.status == 400 and "more than 100 inputs; got 101" in excinfo.value.body


# ------------------------------------------------------------------------------------------------ search rate limit

def test_search_allows_five_per_second_per_token_then_429_secondly(sandbox_limited_search, clock):
    sdk = _sdk(sandbox_limited_search)
    http = Http(sandbox_limited_search.url)
    search = ContactSearch(filter_groups=[], limit=1)
    for _ in range(5):
        assert sdk.crm.contacts.search_api.do_search(search).total == 25
    refused = http.post("/crm/v3/objects/contacts/search", {"limit": 1})
    assert refused.status_code == 429
    body = refused.json()
    assert (body["status"], body["errorType"], body["policyName"]) == ("error", "RATE_LIMIT", "SECONDLY")
    assert body["message"] == "You have reached your secondly limit." and body["correlationId"]
    assert "Retry-After" not in refused.headers  # a search 429 says neither how long nor how many are left
    assert not [h for h in refused.headers if h.lower().startswith("x-hubspot-ratelimit")]
    assert http.get("/crm/v3/objects/contacts", limit=1).status_code == 200  # other endpoints are not held back
    with pytest.raises(ApiException) as excinfo:
        sdk.crm.contacts.search_api.do_search(search)
    assert excinfo.value.status == 429
    clock.advance(0.999)
    assert http.post("/crm/v3/objects/contacts/search", {"limit": 1}).status_code == 429
    clock.advance(0.001)  # the first five left the rolling second
    assert http.post("/crm/v3/objects/contacts/search", {"limit": 1}).status_code == 200
    assert sandbox_limited_search.app.search_limiter.refused == 3


@pytest.fixture
def sandbox_limited_search(state_path, clock):
    with start_sandbox(state_path, token=TOKEN, rate_limit=None, clock=clock) as handle:  # search limit: default
        yield handle


# ------------------------------------------------------------------------------------------------ property registry

def test_write_to_a_property_that_does_not_exist_is_400_and_writes_nothing(hubspot_client, http: Http):
    rows = [SimplePublicObjectBatchInput(id="1", properties={"jobtitle": "CTO"}),
            SimplePublicObjectBatchInput(id="2", properties={"favourite_colour": "teal"})]
    with pytest.raises(ApiException) as excinfo:
        hubspot_client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=rows))
    assert excinfo.value.status == 400
    response = http.post("/crm/v3/objects/contacts/batch/update", {"inputs": [
        {"id": "1", "properties": {"jobtitle": "CTO"}}, {"id": "2", "properties": {"favourite_colour": "teal"}}]})
    body = response.json()
    assert response.status_code == 400 and body["category"] == "VALIDATION_ERROR"
    assert 'Property \\"favourite_colour\\" does not exist' in body["message"]
    assert body["errors"] == [{"message": 'Property "favourite_colour" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                               "context": {"propertyName": ["favourite_colour"]}}]
    assert http.get("/crm/v3/objects/contacts/1", properties="jobtitle").json()["properties"]["jobtitle"] == "Engineer"
    single = http.patch("/crm/v3/objects/contacts/3", {"properties": {"favourite_colour": "teal"}})
    assert single.status_code == 400 and single.json()["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    created = http.post("/crm/v3/objects/contacts", {"properties": {"email": "x@example.com", "shoe_size": "9"}})
    assert created.status_code == 400 and "shoe_size" in created.json()["message"]
    # a read naming a property the account lacks leaves it out (an unset one it answers null)
    props = http.get("/crm/v3/objects/contacts/1", properties="favourite_colour,phone").json()["properties"]
    assert "favourite_colour" not in props and props["phone"] is None


def test_custom_properties_are_created_the_hubspot_way(hubspot_client, http: Http):
    create = PropertyCreate(name="favourite_colour", label="Favourite colour", type="string", field_type="text",
                            group_name="contactinformation")
    made = hubspot_client.crm.properties.core_api.create(object_type="contacts", property_create=create)
    assert (made.name, made.type, made.hubspot_defined) == ("favourite_colour", "string", False)
    with pytest.raises(PropertyApiException) as excinfo:
        hubspot_client.crm.properties.core_api.create(object_type="contacts", property_create=create)
    assert excinfo.value.status == 409
    assert hubspot_client.crm.properties.core_api.get_by_name("contacts", "favourite_colour").label == \
        "Favourite colour"
    names = {p.name: p.hubspot_defined for p in hubspot_client.crm.properties.core_api.get_all("contacts").results}
    assert names["favourite_colour"] is False and names["email"] is True and names["handoff_score"] is False
    updated = hubspot_client.crm.contacts.basic_api.update(
        "1", SimplePublicObjectInput(properties={"favourite_colour": "teal"}))
    assert updated.properties["favourite_colour"] == "teal"
    bad = http.post("/crm/v3/properties/contacts", {"name": "hs_sneaky", "label": "x", "type": "string",
                                                    "fieldType": "text", "groupName": "contactinformation"})
    assert bad.status_code == 400 and "HubSpot property name" in bad.json()["message"]
    assert http.get("/crm/v3/properties/contacts/no_such_thing").status_code == 404


def test_a_task_dedupe_key_needs_the_custom_property(tmp_path, clock):
    state = tmp_path / "bare.sqlite3"
    load_objects(state, "contacts", [contact(1)])
    with start_sandbox(state, token=TOKEN, rate_limit=None, clock=clock) as handle:
        sdk = _sdk(handle)
        task = SimplePublicObjectInputForCreate(properties={"hs_timestamp": "2026-01-02T00:00:00Z",
                                                            "handoff_dedupe_key": "k-1"})
        with pytest.raises(TaskApiException) as excinfo:
            sdk.crm.objects.tasks.basic_api.create(task)
        assert excinfo.value.status == 400 and "PROPERTY_DOESNT_EXIST" in excinfo.value.body
    assert create_handoff_properties(state) == ["contacts.handoff_score", "contacts.handoff_reasons",
                                                "contacts.handoff_sql_at", "tasks.handoff_dedupe_key"]
    assert create_handoff_properties(state) == []  # already there
    with start_sandbox(state, token=TOKEN, rate_limit=None, clock=clock) as handle:
        sdk = _sdk(handle)
        assert sdk.crm.objects.tasks.basic_api.create(task).properties["handoff_dedupe_key"] == "k-1"
        definition = Http(handle.url).get("/crm/v3/properties/tasks/handoff_dedupe_key").json()
        assert definition["hasUniqueValue"] is True


# ------------------------------------------------------------------------------------------------ merges, GDPR delete

def test_merged_contact_reads_as_the_survivor(hubspot_client, http: Http, clock):
    http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "opportunity"}})
    clock.advance(60)
    merged = hubspot_client.crm.contacts.basic_api.merge(PublicMergeInput(primary_object_id="1",
                                                                          object_id_to_merge="2"))
    assert merged.id == "1"
    survivor = http.get("/crm/v3/objects/contacts/1", properties="email,hs_merged_object_ids,lifecyclestage,"
                        "hs_additional_emails").json()
    assert survivor["properties"] == {
        "email": "person1@example.com", "hs_merged_object_ids": "2", "lifecyclestage": "opportunity",
        "hs_additional_emails": "person2@example.com", "hs_object_id": "1", "createdate": "2025-01-01T00:00:00Z",
        "lastmodifieddate": "2026-01-01T00:01:00.000Z"}
    assert survivor["updatedAt"] == "2026-01-01T00:01:00.000Z"  # the incremental extract sees the merge
    by_old_id = http.get("/crm/v3/objects/contacts/2", properties="email")
    assert by_old_id.status_code == 200 and by_old_id.json()["id"] == "1"
    assert [r.id for r in _batch_read(hubspot_client, ["2", "1"]).results] == ["1"]
    listed = [r["id"] for r in http.get("/crm/v3/objects/contacts", limit=100).json()["results"]]
    assert "2" not in listed and "1" in listed
    assert http.post("/crm/v3/objects/contacts/merge", {"primaryObjectId": "1", "objectIdToMerge": "2"}
                     ).status_code == 404  # 2 is gone
    # a merge of the survivor carries the earlier merge along
    hubspot_client.crm.contacts.basic_api.merge(PublicMergeInput(primary_object_id="3", object_id_to_merge="1"))
    assert http.get("/crm/v3/objects/contacts/2").json()["id"] == "3"
    assert http.get("/crm/v3/objects/contacts/3", properties="hs_merged_object_ids").json()["properties"][
        "hs_merged_object_ids"] == "1;2"


def test_a_merge_keeps_the_earlier_date_of_each_stage_the_two_records_entered(hubspot_client, http: Http, clock):
    dates = ("hs_lifecyclestage_marketingqualifiedlead_date,hs_v2_date_entered_marketingqualifiedlead,"
             "hs_lifecyclestage_opportunity_date,hs_v2_date_entered_opportunity")
    http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "marketingqualifiedlead"}})
    clock.advance(60)
    http.patch("/crm/v3/objects/contacts/2", {"properties": {"lifecyclestage": "opportunity"}})
    clock.advance(60)
    http.patch("/crm/v3/objects/contacts/1", {"properties": {"lifecyclestage": "marketingqualifiedlead"}})
    clock.advance(60)
    hubspot_client.crm.contacts.basic_api.merge(PublicMergeInput(primary_object_id="1", object_id_to_merge="2"))
    assert http.get("/crm/v3/objects/contacts/1", properties=dates).json()["properties"] == {
        "hs_object_id": "1", "createdate": "2025-01-01T00:00:00Z", "lastmodifieddate": "2026-01-01T00:03:00.000Z",
        # 2 became an MQL at 00:00 and an opportunity at 00:01; 1 an MQL at 00:02: the survivor keeps the first of
        # each, not the merge's own time (00:03)
        "hs_lifecyclestage_marketingqualifiedlead_date": "2026-01-01T00:00:00.000Z",
        "hs_v2_date_entered_marketingqualifiedlead": "2026-01-01T00:00:00.000Z",
        "hs_lifecyclestage_opportunity_date": "2026-01-01T00:01:00.000Z",
        "hs_v2_date_entered_opportunity": "2026-01-01T00:01:00.000Z"}


def test_merged_ids_in_loaded_data_resolve(tmp_path, clock):
    state = tmp_path / "m.sqlite3"
    survivor = contact(10)
    survivor["properties"]["hs_merged_object_ids"] = "7;8"
    load_objects(state, "contacts", [survivor])
    with start_sandbox(state, token=TOKEN, rate_limit=None, clock=clock) as handle:
        assert Http(handle.url).get("/crm/v3/objects/contacts/8").json()["id"] == "10"


def test_gdpr_delete_and_endpoints_hubspot_serves_are_not_405(hubspot_client, http: Http):
    from hubspot.crm.contacts import PublicGdprDeleteInput

    hubspot_client.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id="5"))
    assert http.get("/crm/v3/objects/contacts/5").status_code == 404
    assert http.get("/crm/v3/objects/contacts/5", archived="true").status_code == 404  # gone, not archived
    upsert = http.post("/crm/v3/objects/contacts/batch/upsert", {"inputs": []})
    assert upsert.status_code == 501 and upsert.json()["category"] == "NOT_IMPLEMENTED"


# ------------------------------------------------------------------------------------------------ stage dates

STAGE_DATES = "hs_lifecyclestage_marketingqualifiedlead_date,hs_v2_date_entered_marketingqualifiedlead," \
              "hs_lifecyclestage_lead_date,hs_v2_date_entered_lead,hs_lifecyclestage_subscriber_date," \
              "hs_lifecyclestage_salesqualifiedlead_date"


def _dates(http: Http, contact_id: str) -> dict:
    props = http.get(f"/crm/v3/objects/contacts/{contact_id}", properties=STAGE_DATES).json()["properties"]
    return {k: v for k, v in props.items() if k.startswith(("hs_lifecyclestage_", "hs_v2_date_entered_"))}


def test_stage_dates_are_set_when_a_stage_is_first_entered(http: Http, clock):
    # loaded: from the lifecyclestage history (subscriber 2025-01-01, lead 2025-03-01)
    assert _dates(http, "4") == {
        "hs_lifecyclestage_subscriber_date": "2025-01-01T00:00:00.000Z",
        "hs_lifecyclestage_lead_date": "2025-03-01T00:00:00.000Z",
        "hs_v2_date_entered_lead": "2025-03-01T00:00:00.000Z",
        "hs_lifecyclestage_marketingqualifiedlead_date": None, "hs_v2_date_entered_marketingqualifiedlead": None,
        "hs_lifecyclestage_salesqualifiedlead_date": None}
    clock.advance(3600)
    assert http.patch("/crm/v3/objects/contacts/4", {"properties": {"lifecyclestage": "marketingqualifiedlead"}}).ok
    first = _dates(http, "4")
    assert first["hs_lifecyclestage_marketingqualifiedlead_date"] == "2026-01-01T01:00:00.000Z"
    assert first["hs_v2_date_entered_marketingqualifiedlead"] == "2026-01-01T01:00:00.000Z"
    assert first["hs_lifecyclestage_lead_date"] == "2025-03-01T00:00:00.000Z"  # earlier stages keep their dates
    clock.advance(3600)  # out and back in: the first entry's date stays
    assert http.patch("/crm/v3/objects/contacts/4", {"properties": {"lifecyclestage": ""}}).ok
    assert http.patch("/crm/v3/objects/contacts/4", {"properties": {"lifecyclestage": "marketingqualifiedlead"}}).ok
    assert _dates(http, "4") == first
    history = http.get("/crm/v3/objects/contacts/4",
                       propertiesWithHistory="hs_v2_date_entered_marketingqualifiedlead").json()
    assert [h["value"] for h in history["propertiesWithHistory"]["hs_v2_date_entered_marketingqualifiedlead"]] == [
        "2026-01-01T01:00:00.000Z"]
    refused = http.patch("/crm/v3/objects/contacts/4", {"properties": {"hs_v2_date_entered_customer": "2020-01-01"}})
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "READ_ONLY_VALUE"


def test_the_extract_asks_for_the_stage_dates():
    from handoff.extract.crm_api import OBJECTS

    wanted = {f"{prefix}{stage}{suffix}" for stage in ("lead", "marketingqualifiedlead", "salesqualifiedlead",
                                                        "opportunity", "customer")
              for prefix, suffix in (("hs_lifecyclestage_", "_date"), ("hs_v2_date_entered_", ""))}
    assert len(wanted) == 10 and wanted <= set(OBJECTS["contacts"].properties)
    assert "hs_merged_object_ids" in OBJECTS["contacts"].properties


# ------------------------------------------------------------------------------------------------ the state file

def test_the_state_file_is_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        state = tmp_path / "fresh" / "sandbox.sqlite3"
        seed_small(state)
        with start_sandbox(state, token=TOKEN, rate_limit=None) as handle:
            assert Http(handle.url).get("/crm/v3/objects/contacts/1").status_code == 200
            files = [state, Path(f"{state}-wal"), Path(f"{state}-shm")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files if p.exists()}
        assert modes["sandbox.sqlite3"] == 0o600 and set(modes.values()) == {0o600}, modes
        loose = tmp_path / "loose.sqlite3"
        loose.touch(mode=0o644)
        os.chmod(loose, 0o644)
        load_objects(loose, "contacts", [contact(1)])
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600  # an existing world-readable state is tightened
    finally:
        os.umask(old)


def test_the_docs_limits_table_is_the_code_table():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "crm-sandbox.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[1].isdigit():
            rows[cells[0].strip("`")] = (int(cells[1]), cells[4])
    assert rows == {name: (limit.value, limit.source) for name, limit in LIMITS.items()}
