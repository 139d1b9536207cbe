"""Local stand-ins for internet services tests cannot reach (see fake_social_apis)."""

from tests.fakes.fake_social_apis import FakeAccount, FakePost, FakeSocialApis, LoggedRequest, mastodon_html

__all__ = ["FakeAccount", "FakePost", "FakeSocialApis", "LoggedRequest", "mastodon_html"]
