"""Replay a recorded OpenAI Realtime session in a test: offline, no API key.

Record its cassette once with `pytest --realtime-record`, commit it, and every later run
(CI included) replays it from a local mock server.
"""


def test_says_hello(realtime_mock):
    client = realtime_mock.client()  # an openai.OpenAI pointed at the local mock
    with client.realtime.connect(model="gpt-realtime") as conn:
        conn.session.update(
            session={"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."}
        )
        conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say hello in three words."}],
            }
        )
        conn.response.create()
        text = ""
        for event in conn:
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.done":
                break
    assert "hello" in text.lower()
