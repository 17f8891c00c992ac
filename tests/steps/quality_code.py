"""The code the quality tests measure: a project with a complex function and a copied
block already (`EXISTING`), and a change that adds one of each (`CHANGE`)."""

from __future__ import annotations

TANGLED = """\
def tangled(kind, size, rush, fragile):
    if kind == "book" and size > 3:
        cost = 4
    elif kind == "lamp" or fragile:
        cost = 9
    else:
        cost = 2
    for _ in range(size):
        if rush:
            cost += 2
        elif fragile and size > 1:
            cost += 1
    while cost > 100:
        cost -= 10
    return cost if cost > 0 else 1
"""
TOTAL_BODY = """\
    subtotal = sum(line.price * line.quantity for line in order.lines)
    discount = subtotal * order.customer.discount_rate / 100
    shipping = 0 if subtotal > 50 else order.address.shipping_cost
    taxes = (subtotal - discount + shipping) * order.address.tax_rate
    total = subtotal - discount + shipping + taxes
    return round(total, 2)
"""
ORDERS = "def order_total(order):\n" + TOTAL_BODY
INVOICES = (
    '"""Invoices: totals as for orders (copied)."""\n\n\ndef invoice_total(order):\n' + TOTAL_BODY
)
REFUNDABLE = """\
def refundable(order, days, reason, member):
    if reason == "damaged" or reason == "missing":
        return True
    if days > 30 and not member:
        return False
    for line in order.lines:
        if line.final_sale:
            return False
        elif line.opened and reason != "faulty":
            return False
    while days > 60:
        days -= 30
    return member or days < 14
"""
REFUNDS = (
    '"""Refunds: a copied total and a knotted rule."""\n\n\ndef refund_total(order):\n'
    + TOTAL_BODY
    + "\n\n"
    + REFUNDABLE
)
SIMPLE = "def greet(name):\n    return f'hello {name}'\n"

EXISTING = {
    "app/legacy.py": TANGLED,  # complexity 11
    "app/orders.py": ORDERS,
    "app/invoices.py": INVOICES,  # lines 4-10 copy orders.py 1-7
    "app/simple.py": SIMPLE,
}
CHANGE = {"app/refunds.py": REFUNDS}  # refund_total copies the total; refundable is 11
# Where the change's offences are: the copy at refunds.py:4, refundable's def at :13.
NEW_OFFENCES = {
    ("jscpd", "quality/duplication", "app/refunds.py:4"),
    ("lizard", "quality/complexity", "app/refunds.py:13"),
}
OLD_OFFENCES = {
    ("jscpd", "quality/duplication", "app/orders.py:1"),
    ("lizard", "quality/complexity", "app/legacy.py:1"),
}
