"""An incoming account's default analyst (set from the admin pages): only an
active analyst, and None clears it."""

import pytest

from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.inbound.accounts import create_account, update_account


def test_default_analyst_is_an_active_analyst_and_can_be_cleared(people):
    account = create_account("help", "lmtp", addresses=["help@desk.test"], default_analyst=people["bob"])
    db.session.commit()
    assert account.default_analyst is people["bob"]
    with pytest.raises(InvalidInput, match="Carol Customer is not an active analyst") as refused:
        update_account(account, default_analyst=people["carol"])
    assert refused.value.field == "default_analyst"
    db.session.rollback()
    people["anna"].active = False
    with pytest.raises(InvalidInput, match="not an active analyst"):
        update_account(account, default_analyst=people["anna"])
    db.session.rollback()
    update_account(account, actor=people["admin"], default_analyst=None)
    db.session.commit()
    assert account.default_analyst_id is None
