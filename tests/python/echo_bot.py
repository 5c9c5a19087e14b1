"""An ordinary python-telegram-bot echo bot. The only thing changed for botwatch is
the API base address (BOT_API_BASE), as a bot owner would change it; the test runs it
against botwatch's Bot API proxy with a stand-in Telegram behind it."""

import os

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f"echo: {update.message.text}")


def main() -> None:
    app = (
        Application.builder()
        .token(os.environ["BOT_TOKEN"])
        .base_url(os.environ["BOT_API_BASE"])
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    # Short polls, so the test's updates are fetched at once.
    app.run_polling(poll_interval=0.1, timeout=1, drop_pending_updates=False)


if __name__ == "__main__":
    main()
