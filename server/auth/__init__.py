"""API keys and tenancy: keys at rest (`keys.py`), usage for budgets (`ledger.py`), limits (`tenancy.py`)."""

from .keys import KeyRecord, KeyStore, KeyStoreError
from .tenancy import OPEN_TENANT, Tenancy, Tenant, resolve_mode

__all__ = ["OPEN_TENANT", "KeyRecord", "KeyStore", "KeyStoreError", "Tenancy", "Tenant", "resolve_mode"]
