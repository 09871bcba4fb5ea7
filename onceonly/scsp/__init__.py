"""SCSP v3: the SOAP protocol Spain's data-intermediation platform speaks, as onceonly speaks it.

The broker serves it on a listener of its own (``ONCEONLY_SCSP_LISTEN``; see
:mod:`onceonly.broker.scsp`), and ``onceonly scsp send`` is its client. What both sides share is
here: the namespaces, our XSDs and WSDL (:mod:`.soap`), WS-Security (:mod:`.wssecurity`) and the
SCSP status codes (:mod:`.codes`).
"""
