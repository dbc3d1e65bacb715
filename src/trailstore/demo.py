"""A deterministic workload of realistic CRUD audit events, for the demo and the benchmarks.

``Workload`` keeps the records it has created in memory, so whoever appends its events can
check a replay of the trail against ``Workload.records``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from trailstore.backend import StreamKey
from trailstore.events import AuditOperation, AuditPayload

Record = dict[str, Any]
#: ``records[stream][model_name][key]``: the same shape as ``ReplayResult.state`` per stream
Records = dict[StreamKey, dict[str, dict[str, Record]]]

_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus", "Margaret")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman")
_CITIES = ("Lyon", "Porto", "Gdansk", "Leipzig", "Bergen", "Utrecht", "Tartu", "Bologna")
_STREETS = ("Harbour Road", "Mill Lane", "Station Street", "Kingsway", "Elm Avenue")
_PRODUCTS = (
    "espresso beans 1kg",
    "ceramic pour-over",
    "burr grinder",
    "milk frother",
    "gooseneck kettle",
    "paper filters x100",
    "travel mug",
    "digital scale",
)
_DEPARTMENTS = ("engineering", "finance", "support", "sales", "operations")
_TITLES = ("associate", "engineer", "senior engineer", "lead", "manager", "director")
_USERS = (
    *(f"user-{number:03d}" for number in range(1, 25)),
    "svc-checkout",
    "svc-billing",
    "svc-hr-sync",
)
_NOTES = (
    "Customer asked for delivery after 5pm.",
    "Escalated by support, see ticket history.",
    "Verified by phone; identity confirmed against the contract on file.",
    "Migrated from the legacy system during the spring cut-over.",
    "Please double-check the VAT number before the next invoice run.",
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"


def _address(rng: random.Random) -> Record:
    return {
        "street": f"{rng.randint(1, 240)} {rng.choice(_STREETS)}",
        "city": rng.choice(_CITIES),
        "postcode": f"{rng.randint(10000, 99999)}",
    }


def _lines(rng: random.Random, count: int) -> list[Record]:
    return [
        {
            "sku": f"SKU-{rng.randint(1000, 9999)}",
            "description": rng.choice(_PRODUCTS),
            "quantity": rng.randint(1, 5),
            "unit_price_cents": rng.randint(299, 24999),
        }
        for _ in range(count)
    ]


def _total(lines: list[Record]) -> int:
    return sum(int(line["quantity"]) * int(line["unit_price_cents"]) for line in lines)


def _new_order(rng: random.Random) -> Record:
    lines = _lines(rng, rng.randint(1, 5))
    order: Record = {
        "customer_id": f"cus_{rng.getrandbits(32):08x}",
        "status": "pending",
        "currency": "EUR",
        "lines": lines,
        "total_cents": _total(lines),
        "shipping_address": _address(rng),
    }
    if rng.random() < 0.3:
        order["coupon_code"] = f"SPRING{rng.randint(5, 30)}"
    return order


def _update_order(rng: random.Random, order: Record) -> None:
    progression = {"pending": "paid", "paid": "shipped", "shipped": "delivered"}
    status = order["status"]
    if status in progression and rng.random() < 0.7:
        order["status"] = progression[status]
        if order["status"] == "shipped":
            order["tracking_number"] = f"TRK{rng.getrandbits(40):010X}"
    elif order["lines"] and rng.random() < 0.5:
        line = rng.choice(order["lines"])
        line["quantity"] = rng.randint(1, 6)
        order["total_cents"] = _total(order["lines"])
    else:
        order.pop("coupon_code", None)
        order["note"] = rng.choice(_NOTES)


def _new_customer(rng: random.Random) -> Record:
    name = _person(rng)
    customer: Record = {
        "name": name,
        "email": f"{name.lower().replace(' ', '.')}{rng.randint(1, 999)}@example.org",
        "phone": f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        "address": _address(rng),
        "tier": "standard",
        "marketing_opt_in": rng.random() < 0.4,
    }
    if rng.random() < 0.3:
        customer["notes"] = [rng.choice(_NOTES) for _ in range(rng.randint(1, 3))]
    return customer


def _update_customer(rng: random.Random, customer: Record) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        customer["address"] = _address(rng)
    elif choice == 1:
        customer["tier"] = rng.choice(("standard", "silver", "gold"))
    elif choice == 2:
        customer["marketing_opt_in"] = not customer["marketing_opt_in"]
        customer.pop("notes", None)
    else:
        customer["email"] = (
            f"{customer['name'].split()[0].lower()}{rng.randint(1, 999)}@example.com"
        )


def _new_invoice(rng: random.Random) -> Record:
    lines = _lines(rng, rng.randint(1, 6))
    return {
        "number": f"INV-{rng.randint(2024, 2026)}-{rng.randint(1, 99999):05d}",
        "customer_id": f"cus_{rng.getrandbits(32):08x}",
        "status": "draft",
        "lines": lines,
        "amount_cents": _total(lines),
        "vat_rate_percent": rng.choice((0, 5, 10, 20)),
    }


def _update_invoice(rng: random.Random, invoice: Record) -> None:
    progression = {"draft": "issued", "issued": "paid"}
    if invoice["status"] in progression:
        invoice["status"] = progression[invoice["status"]]
        if invoice["status"] == "paid":
            invoice["paid_cents"] = invoice["amount_cents"]
    else:
        invoice["reminders_sent"] = int(invoice.get("reminders_sent", 0)) + 1


def _new_credit_note(rng: random.Random) -> Record:
    return {
        "invoice_number": f"INV-{rng.randint(2024, 2026)}-{rng.randint(1, 99999):05d}",
        "customer_id": f"cus_{rng.getrandbits(32):08x}",
        "amount_cents": rng.randint(500, 50000),
        "currency": "EUR",
        "channel": rng.choice(("portal", "support desk", "api")),
        "reason": rng.choice(("damaged goods", "late delivery", "duplicate charge", "goodwill")),
        "approved_by": rng.choice(_USERS),
    }


def _update_credit_note(rng: random.Random, note: Record) -> None:
    note["amount_cents"] = rng.randint(500, 50000)
    note["comment"] = rng.choice(_NOTES)


def _new_employee(rng: random.Random) -> Record:
    return {
        "name": _person(rng),
        "department": rng.choice(_DEPARTMENTS),
        "title": rng.choice(_TITLES),
        "salary_cents": rng.randint(3_000_000, 12_000_000),
        "manager": _person(rng),
        "probation_end": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "home_address": _address(rng),
    }


def _update_employee(rng: random.Random, employee: Record) -> None:
    choice = rng.randrange(3)
    if choice == 0:
        employee["salary_cents"] = int(employee["salary_cents"] * rng.uniform(1.01, 1.12))
    elif choice == 1:
        employee["title"] = rng.choice(_TITLES)
        employee.pop("probation_end", None)
    else:
        employee["department"] = rng.choice(_DEPARTMENTS)
        employee["manager"] = _person(rng)


@dataclass(frozen=True)
class _Model:
    name: str
    key_prefix: str
    create: Callable[[random.Random], Record]
    update: Callable[[random.Random, Record], None]


@dataclass(frozen=True)
class _Stream:
    key: StreamKey
    weight: int
    models: tuple[_Model, ...]


_STREAMS = (
    _Stream(StreamKey("shop", "orders"), 4, (_Model("Order", "ord", _new_order, _update_order),)),
    _Stream(
        StreamKey("shop", "customers"),
        2,
        (_Model("Customer", "cus", _new_customer, _update_customer),),
    ),
    _Stream(
        StreamKey("billing", "invoices"),
        3,
        (
            _Model("Invoice", "inv", _new_invoice, _update_invoice),
            _Model("CreditNote", "crn", _new_credit_note, _update_credit_note),
        ),
    ),
    _Stream(
        StreamKey("hr", "employees"),
        1,
        (_Model("Employee", "emp", _new_employee, _update_employee),),
    ),
)

#: the payload field that identifies a workload record (replay with ``key_field`` set to it)
WORKLOAD_KEY_FIELD = "id"
#: the streams a ``Workload`` writes to
WORKLOAD_STREAMS: tuple[StreamKey, ...] = tuple(stream.key for stream in _STREAMS)


class Workload:
    """Endless, deterministic (given ``seed`` and ``records``) CRUD traffic over four streams.

    Each event is a dict of ``AuditTrailWriter.append_event`` keywords whose payload is about
    200-2000 bytes of JSON: creates, updates built with ``AuditPayload.from_update`` on records
    that evolve (fields change, appear and disappear) and deletes. Records are keyed by their
    ``id`` field. Pass the ``records`` of an earlier run to continue its trail.
    """

    def __init__(self, seed: int | str = 0, *, records: Records | None = None) -> None:
        self._rng = random.Random(seed)
        self.records: Records = {stream: {} for stream in WORKLOAD_STREAMS}
        for stream, models in (records or {}).items():
            self.records[stream] = copy.deepcopy(models)

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield ``count`` events; ``records`` is updated as each one is yielded."""
        for _ in range(count):
            yield self.next_event()

    def next_event(self) -> dict[str, Any]:
        """Produce the next event and apply it to ``records``."""
        rng = self._rng
        stream = rng.choices(_STREAMS, weights=[s.weight for s in _STREAMS])[0]
        model = rng.choice(stream.models)
        live = self.records[stream.key].setdefault(model.name, {})
        roll = rng.random()
        if len(live) < 5 or roll < 0.4:
            operation, payload = AuditOperation.CREATE, self._create(model, live)
        elif roll < 0.87:
            key = rng.choice(sorted(live))
            before = live[key]
            after = copy.deepcopy(before)
            model.update(rng, after)
            live[key] = after
            operation, payload = (
                AuditOperation.UPDATE,
                AuditPayload.from_update(before, after, key_field=WORKLOAD_KEY_FIELD),
            )
        else:
            key = rng.choice(sorted(live))
            operation, payload = AuditOperation.DELETE, AuditPayload.from_delete(live.pop(key))
        return {
            "domain": stream.key.domain,
            "category": stream.key.category,
            "model_name": model.name,
            "operation": operation,
            "logical_user_id": rng.choice(_USERS),
            "request_id": f"req-{rng.getrandbits(64):016x}",
            "payload": payload,
        }

    def _create(self, model: _Model, live: dict[str, Record]) -> AuditPayload:
        key = f"{model.key_prefix}_{self._rng.getrandbits(48):012x}"
        while key in live:
            key = f"{model.key_prefix}_{self._rng.getrandbits(48):012x}"
        record = {WORKLOAD_KEY_FIELD: key, **model.create(self._rng)}
        live[key] = record
        return AuditPayload.from_create(copy.deepcopy(record))
