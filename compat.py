"""What differs between the Odoo series this addon supports, kept in this one module."""

from odoo import release

ODOO_MAJOR = release.version_info[0]

# The list view type: ``list`` since Odoo 18, ``tree`` before.
LIST_VIEW = "list" if ODOO_MAJOR >= 18 else "tree"


def send_bus_notification(user, notification_type, payload):
    """Queue ``payload`` for ``user``'s web clients, sent when the transaction commits.

    Returns False when the bus module is not installed: notifications are a convenience.
    """
    if "bus.bus" not in user.env:
        return False
    if ODOO_MAJOR >= 18:
        user._bus_send(notification_type, payload)
    else:
        user.env["bus.bus"]._sendone(user.partner_id, notification_type, payload)
    return True


def action_url(xmlid):
    """The web client's address of a window action."""
    return f"/odoo/action-{xmlid}" if ODOO_MAJOR >= 18 else f"/web#action={xmlid}"


def check_access(records, operation):
    """Raise AccessError unless the user may apply ``operation`` to ``records`` (model rights and rules)."""
    if ODOO_MAJOR >= 18:
        records.check_access(operation)
    else:
        records.check_access_rights(operation)
        records.check_access_rule(operation)
