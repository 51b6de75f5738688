from realtime_cascade.core import OnlineRouter, request_features

EASY = ["Book a table for two.", "What time do you open?", "Cancel my booking please."]
HARD = [
    "Move my flight to Friday, keep my seat, and apply my voucher unless the fare goes up.",
    "Change both bookings to the earliest slot, but only if the price stays the same and keep it.",
]


def test_router_learns_to_separate_easy_from_hard() -> None:
    router = OnlineRouter()
    assert router.predict(request_features(EASY[0]).vector()) == 0.5
    for _ in range(60):
        for text in EASY:
            router.observe(request_features(text).vector(), preempted=False)
        for text in HARD:
            router.observe(request_features(text).vector(), preempted=True)
    assert router.observations == 60 * 5
    for text in HARD:
        assert router.estimate(request_features(text).vector()).p_preempt > 0.8
    for text in EASY:
        assert router.estimate(request_features(text).vector()).p_preempt < 0.2
