"""Decision quality: the outcomes format, the field's routing metrics, and the replay of recsys's decisions.

Import the submodules (``outcomes``, ``metrics``, ``replay``, ``importers``); they load numpy and pyarrow,
so nothing here is imported at CLI start-up.
"""

__all__: list[str] = []
