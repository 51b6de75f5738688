"""The booking demo: a restaurant and flight booking agent run through the cascade.

    domain.py     the seeded world (catalog) and a per-conversation store
    tools.py      tool argument types, their JSON Schemas (OpenAI tools format), the executor
    verify.py     the correctness verifier the monitor uses (schema + domain rules)
    nlu.py        how the simulated tiers read a request (and how hard it is)
    script.py     the domain-backed sim script (``SCRIPT``) for light and strong tiers
    agent.py      the booking agent (a realtime_cascade.Agent): prompt, tools, verifier
    scenarios.py  the scenario suite with ground truth
    wsagent.py    a Realtime client of the served agent
    demo.py       the ``realtime-cascade demo`` runner
"""
