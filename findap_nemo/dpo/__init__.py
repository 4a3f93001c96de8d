"""Preference training (DPO, IPO, RPO) on megatron-core with a frozen reference policy."""
