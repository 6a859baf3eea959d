"""Read side through the official SDK and raw HTTP: paging, properties, history, associations,
search, the 10,000-result cap, owners, archived records and auth."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from handoff.crm_sandbox import load_objects
from hubspot import HubSpot
from hubspot.crm.associations import BatchInputPublicObjectId, PublicObjectId
from hubspot.crm.contacts import ApiException, PublicObjectSearchRequest
from hubspot.crm.contacts.exceptions import UnauthorizedException
from sandbox_support import TOKEN, Http, contact


def _ms(iso: str) -> str:
    return str(int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))


def test_sdk_pages_through_every_contact_exactly_once(hubspot_client):
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = hubspot_client.crm.contacts.basic_api.get_page(
            limit=7, after=after, properties=["email", "lifecyclestage"], properties_with_history=["lifecyclestage"])
        pages += 1
        seen.extend(r.id for r in page.results)
        for r in page.results:
            assert set(r.properties) == {"email", "lifecyclestage", "hs_object_id", "createdate", "lastmodifieddate"}
            history = r.properties_with_history["lifecyclestage"]
            assert [h.value for h in history] == ["lead", "subscriber"]  # newest first
            assert history[0].source_type == "CRM_UI" and history[0].updated_by_user_id == 9001
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == [str(i) for i in range(1, 26)]  # 26 is archived: not listed
    assert pages == 4


def test_default_properties_when_none_requested(http: Http):
    body = http.get("/crm/v3/objects/contacts", limit=1).json()
    assert set(body["results"][0]["properties"]) == {"createdate", "email", "firstname", "hs_object_id",
                                                     "lastmodifieddate", "lastname"}
    assert body["paging"]["next"]["after"] == "2"
    assert body["paging"]["next"]["link"].endswith("after=2")


def test_comma_separated_properties_and_last_page_has_no_paging(http: Http):
    body = http.get("/crm/v3/objects/contacts", limit=100, properties="jobtitle,hubspot_owner_id").json()
    assert len(body["results"]) == 25
    assert "paging" not in body
    first = body["results"][0]
    assert first["properties"]["jobtitle"] == "Engineer"
    assert first["properties"]["hubspot_owner_id"] == "1"
    assert "email" not in first["properties"]
    assert first["updatedAt"] == "2025-06-01T12:00:00.000Z"
    assert first["archived"] is False


def test_limit_over_100_is_rejected(http: Http):
    response = http.get("/crm/v3/objects/contacts", limit=101)
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_associations_on_list_and_read(http: Http, hubspot_client):
    meetings = http.get("/crm/v3/objects/meetings", associations="contacts").json()["results"]
    assert meetings[0]["associations"] == {"contacts": {"results": [{"id": "1", "type": "meeting_to_contact"}]}}
    one = hubspot_client.crm.contacts.basic_api.get_by_id("1", associations=["meetings", "companies"])
    assert [a.id for a in one.associations["meetings"].results] == ["700"]
    assert [a.id for a in one.associations["companies"].results] == ["500"]  # from associatedcompanyid
    two = http.get("/crm/v3/objects/contacts/2", associations="companies").json()
    assert "associations" not in two  # HubSpot omits empty associations


def test_associations_batch_read_through_the_sdk(http: Http, hubspot_client):
    inputs = BatchInputPublicObjectId(inputs=[PublicObjectId(id="700"), PublicObjectId(id="2")])
    got = hubspot_client.crm.associations.batch_api.read("meetings", "contacts", inputs)
    assert [(r._from.id, [(a.id, a.type) for a in r.to]) for r in got.results] == [
        ("700", [("1", "meeting_to_contact")])]
    assert got.num_errors == 1  # meeting 2 does not exist: no associations, as HubSpot answers it
    assert got.errors[0].sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"
    assert got.errors[0].context == {"fromObjectId": ["2"]}
    back = http.post("/crm/v3/associations/contacts/meetings/batch/read", {"inputs": [{"id": "1"}]})
    assert back.status_code == 200
    assert back.json()["results"] == [{"from": {"id": "1"}, "to": [{"id": "700", "type": "contact_to_meeting"}]}]
    too_many = http.post("/crm/v3/associations/meetings/contacts/batch/read",
                         {"inputs": [{"id": str(i)} for i in range(1001)]})
    assert too_many.status_code == 400
    assert too_many.json()["context"] == {"maxInputs": ["1000"], "inputs": ["1001"]}


def test_read_by_email_id_property(http: Http):
    body = http.get("/crm/v3/objects/contacts/PERSON7@example.com", idProperty="email").json()
    assert body["id"] == "7"
    assert http.get("/crm/v3/objects/contacts/nobody@example.com", idProperty="email").status_code == 404


def test_unknown_id_is_404_with_hubspot_error(http: Http):
    response = http.get("/crm/v3/objects/contacts/999999")
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "error" and body["category"] == "OBJECT_NOT_FOUND" and body["correlationId"]


def test_search_lastmodifieddate_gte_returns_the_right_subset(hubspot_client):
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                     "value": _ms("2025-06-20T12:00:00Z")}]}],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "lastmodifieddate"], limit=4)
    ids: list[str] = []
    totals = set()
    while True:
        page = hubspot_client.crm.contacts.search_api.do_search(request)
        totals.add(page.total)
        ids.extend(r.id for r in page.results)
        if page.paging is None:
            break
        request.after = page.paging.next.after
    assert ids == [str(i) for i in range(20, 26)]  # archived 26 never appears in search
    assert totals == {6}


@pytest.mark.parametrize(("filters", "expected"), [
    ([{"propertyName": "lastmodifieddate", "operator": "BETWEEN", "value": "2025-06-03T00:00:00Z",
       "highValue": "2025-06-05T23:00:00Z"}], ["3", "4", "5"]),
    ([{"propertyName": "lastmodifieddate", "operator": "LT", "value": _ms("2025-06-03T00:00:00Z")}], ["1", "2"]),
    ([{"propertyName": "hs_object_id", "operator": "IN", "values": ["4", "9", "404"]}], ["4", "9"]),
    ([{"propertyName": "email", "operator": "EQ", "value": "PERSON3@example.com"}], ["3"]),
    ([{"propertyName": "associatedcompanyid", "operator": "NOT_HAS_PROPERTY"},
      {"propertyName": "hs_object_id", "operator": "LTE", "value": "6"}], ["2", "4", "6"]),
    ([{"propertyName": "associatedcompanyid", "operator": "HAS_PROPERTY"},
      {"propertyName": "hs_object_id", "operator": "GT", "value": "20"}], ["21", "23", "25"]),
])
def test_search_operators(http: Http, filters, expected):
    body = http.post("/crm/v3/objects/contacts/search", {"filterGroups": [{"filters": filters}], "limit": 100}).json()
    assert [r["id"] for r in body["results"]] == expected
    assert body["total"] == len(expected)


def test_search_filter_groups_are_ored_and_string_sort_descending(http: Http):
    body = http.post("/crm/v3/objects/contacts/search", {
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "2"}]},
                         {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "5"}]}],
        "sorts": ["-lastmodifieddate"]}).json()
    assert [r["id"] for r in body["results"]] == ["5", "2"]
    assert set(body["results"][0]["properties"]) == {"createdate", "email", "firstname", "hs_object_id",
                                                     "lastmodifieddate", "lastname"}


def test_search_rejects_limit_over_200_and_unknown_operator(http: Http):
    assert http.post("/crm/v3/objects/contacts/search", {"limit": 201}).status_code == 400
    response = http.post("/crm/v3/objects/contacts/search",
                         {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]})
    assert response.status_code == 400 and response.json()["category"] == "VALIDATION_ERROR"


def test_search_10000_result_cap(tmp_path, clock):
    from handoff.crm_sandbox import start_sandbox

    state = tmp_path / "big.sqlite3"
    base = {"createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-02-01T00:00:00Z", "archived": False}
    load_objects(state, "contacts", ({"id": str(i), "properties": {"email": f"c{i}@x.io"}, **base}
                                     for i in range(1, 10_051)))
    with start_sandbox(state, token=TOKEN, rate_limit=None, clock=clock) as handle:
        client = HubSpot(access_token=TOKEN, host=handle.url)
        request = PublicObjectSearchRequest(
            filter_groups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}],
            limit=100, after="9900")
        page = client.crm.contacts.search_api.do_search(request)
        assert page.total == 10_050
        assert [r.id for r in page.results][:2] == ["9901", "9902"] and len(page.results) == 100
        assert page.paging.next.after == "10000"
        request.after = page.paging.next.after
        with pytest.raises(ApiException) as excinfo:
            client.crm.contacts.search_api.do_search(request)
        assert excinfo.value.status == 400
        assert '"category":"VALIDATION_ERROR"' in excinfo.value.body
        # the plain list endpoint has no such cap
        listed = Http(handle.url).get("/crm/v3/objects/contacts", limit=100, after="10001").json()
        assert [r["id"] for r in listed["results"]][0] == "10001" and "paging" not in listed


def test_owners_through_the_sdk(hubspot_client, http: Http):
    page = hubspot_client.crm.owners.owners_api.get_page(limit=1)
    assert [o.id for o in page.results] == ["1"]
    assert page.results[0].teams[0].name == "Sales" and page.results[0].user_id == 9001
    page2 = hubspot_client.crm.owners.owners_api.get_page(limit=1, after=page.paging.next.after)
    assert [o.id for o in page2.results] == ["2"] and page2.paging is None
    archived = hubspot_client.crm.owners.owners_api.get_page(archived=True)
    assert [o.id for o in archived.results] == ["3"]
    assert hubspot_client.crm.owners.owners_api.get_by_id(9002, id_property="userId").id == "2"
    assert http.get("/crm/v3/owners/3").status_code == 404


def test_archived_listing_and_delete(http: Http, clock):
    assert [r["id"] for r in http.get("/crm/v3/objects/contacts", archived="true").json()["results"]] == ["26"]
    clock.advance(60)
    assert http.delete("/crm/v3/objects/contacts/5").status_code == 204
    archived = http.get("/crm/v3/objects/contacts", archived="true").json()["results"]
    assert [r["id"] for r in archived] == ["5", "26"]
    five = archived[0]
    assert five["archived"] is True and five["archivedAt"] == "2026-01-01T00:01:00.000Z"
    assert five["updatedAt"] == "2026-01-01T00:01:00.000Z"
    active = [r["id"] for r in http.get("/crm/v3/objects/contacts", limit=100).json()["results"]]
    assert "5" not in active and len(active) == 24
    assert http.get("/crm/v3/objects/contacts/5").status_code == 404
    assert http.get("/crm/v3/objects/contacts/5", archived="true").json()["archived"] is True


def test_missing_or_wrong_token_is_401(sandbox):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dGVzdA=="}):
        response = Http(sandbox.url, token=None).session.get(sandbox.url + "/crm/v3/objects/contacts",
                                                             headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"] and body["correlationId"]
    client = HubSpot(access_token="wrong", host=sandbox.url)
    with pytest.raises(UnauthorizedException):
        client.crm.contacts.basic_api.get_page()


def test_object_type_aliases(http: Http):
    assert http.get("/crm/v3/objects/0-1/3").json()["id"] == "3"
    assert http.get("/crm/v3/objects/contact/3").json()["id"] == "3"
    assert http.get("/crm/v3/objects/widgets").status_code == 400


def test_load_objects_reports_the_bad_record(tmp_path):
    bad = contact(1)
    bad["id"] = "abc"
    with pytest.raises(ValueError, match=r"<contacts>:1: contacts id must be digits"):
        load_objects(tmp_path / "s.sqlite3", "contacts", [bad])


def test_utc_iso_output(http: Http):
    created = http.get("/crm/v3/objects/companies/500").json()["createdAt"]
    assert datetime.fromisoformat(created.replace("Z", "+00:00")) == datetime(2025, 1, 1, tzinfo=UTC)
