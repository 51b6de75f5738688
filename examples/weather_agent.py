"""The smallest agent: one tool. Serve it with
``realtime-cascade serve --agent examples.weather_agent:agent`` (from the repository root)."""

from realtime_cascade import Agent


def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 21 °C in {city}."


agent = Agent(instructions="You tell people the weather. Be brief.", tools=[get_weather])
