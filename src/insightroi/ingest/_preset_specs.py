"""The import presets as plain data: each vendor export and how its columns map onto our tables.

:mod:`insightroi.ingest._presets` interprets them (its docstring describes the rules). They live
here, importing nothing, because ``insightroi ingest --help`` names the presets and every
``insightroi`` command builds that help when it starts; the ingest package imports pyarrow and DuckDB.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

# Vendor date formats (strptime); ISO 8601 (with Z or an offset) is always tried first.
_SHOPIFY_TIME = ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"]
_ZENDESK_TIME = ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
_TRUSTPILOT_TIME = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"]

#: The presets. ``tables`` maps our table -> our column -> rule; the first table is the main one
#: (its ``id`` keys the attributes table). ``required`` are header columns the export must have.
PRESETS: dict[str, dict[str, Any]] = {
    "zendesk_tickets": {
        "vendor": "Zendesk Support",
        "export": "Tickets CSV export (Admin Center > Account > Tools > Reports > Export > CSV)",
        "url": "https://support.zendesk.com/hc/en-us/articles/4408886165402",
        "note": (
            "The article documents the export but does not list the CSV's columns; the header used "
            "here is the legacy CSV export's (Id, Requester, Requester id, Requester email, "
            "..., Subject, Tags, Status, Priority, Via, Ticket type, Created at, ..., Solved at, ...), "
            "not confirmed column by column. That CSV has no ticket description; a 'Description' "
            "column (a view or Explore export adds it) is used as the text when present, else the Subject."
        ),
        "required": ["Id", "Subject", "Status", "Via", "Created at"],
        "tables": {
            "tickets": {
                "id": {"col": "Id", "prefix": "zd-"},
                "customer_id": {"col": "Requester email"},
                "channel": {"map": "Via", "values": {
                    "mail": "email", "email": "email", "web form": "web", "web widget": "web", "web service": "web",
                    "chat": "chat", "messaging": "chat", "native messaging": "chat",
                    "phone call (incoming)": "phone", "phone call (outgoing)": "phone", "voicemail": "phone",
                    "api": "api", "facebook": "social", "twitter": "social", "instagram direct": "social",
                    "mobile sdk": "in_app", "mobile": "in_app", "closed ticket": "follow_up",
                }},
                "opened_at": {"time": "Created at", "formats": _ZENDESK_TIME},
                "closed_at": {"time": "Solved at", "formats": _ZENDESK_TIME},
                "team": {"col": "Group"},
            },
            "feedback": {
                "id": {"col": "Id", "prefix": "zd-"},
                "source": {"const": "ticket"},
                "channel": {"map": "Via", "values": "tickets.channel"},
                "customer_id": {"col": "Requester email"},
                "event_time": {"time": "Created at", "formats": _ZENDESK_TIME},
                "text": {"first": ["Description", "Subject"]},
            },
        },
        # Status and priority are kept as attributes (tickets has no such columns); their
        # vendor values are normalised so a filter on them does not depend on the export's casing.
        "attribute_maps": {
            "Status": {"new": "new", "open": "open", "pending": "pending", "on-hold": "hold", "hold": "hold",
                       "solved": "solved", "closed": "closed"},
            "Priority": {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent", "-": None},
        },
        "drop": ["Requester", "Submitter", "Assignee"],
    },
    "intercom_conversations": {
        "vendor": "Intercom",
        "export": "Conversations as the Conversations API returns them, flattened one row per conversation",
        "url": "https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations",
        "note": (
            "Intercom has no conversation-CSV download with message text in its UI (the reporting export "
            "has no bodies; conversations are exported through the API or S3, see "
            "https://www.cstar.help/support/import-export/migrating-from-intercom). This preset reads the "
            "API's Conversation fields flattened with dots (id, created_at in Unix seconds, state, "
            "source.body in HTML, source.author.email, conversation_rating.rating, ...): a column set we "
            "define from the API reference, not a vendor CSV."
        ),
        "required": ["id", "created_at", "source.body"],
        "tables": {
            "feedback": {
                "id": {"col": "id", "prefix": "ic-"},
                "source": {"const": "chat"},
                "channel": {"map": "source.type", "values": {
                    "conversation": "messenger", "email": "email", "facebook": "facebook", "twitter": "twitter",
                    "whatsapp": "whatsapp", "instagram": "instagram", "phone_call": "phone", "sms": "sms",
                    "push": "push", "chat": "messenger",
                }},
                "customer_id": {"first": ["source.author.email", "contacts.external_id", "contacts.id"]},
                "event_time": {"epoch": "created_at"},
                "rating": {"col": "conversation_rating.rating", "range": (1, 5)},
                "text": {"html": "source.body"},
            },
        },
        "drop": ["source.author.name"],
    },
    "app_store_reviews": {
        "vendor": "Apple App Store Connect",
        "export": "Ratings and Reviews: customer reviews (the customerReviews resource's attributes as CSV)",
        "url": "https://developer.apple.com/documentation/appstoreconnectapi/customerreview",
        "note": (
            "App Store Connect shows reviews (https://developer.apple.com/help/app-store-connect/"
            "monitor-ratings-and-reviews/ratings-and-reviews-overview) but documents no CSV download; "
            "the columns here are the API's CustomerReview attributes (id, rating, title, body, "
            "reviewerNickname, createdDate, territory), as review tools export them. Not a confirmed "
            "vendor CSV. The resource carries no app version: an 'appVersionString' column, when a "
            "tool adds one, is kept as an attribute. territory (ISO 3166 alpha-3) goes to region; "
            "there is no review language, so locale stays empty."
        ),
        "required": ["id", "rating", "createdDate", "body"],
        "tables": {
            "feedback": {
                "id": {"col": "id", "prefix": "as-"},
                "source": {"const": "review"},
                "channel": {"const": "app_store"},
                "region": {"col": "territory"},
                "event_time": {"time": "createdDate", "formats": []},
                "rating": {"col": "rating", "range": (1, 5)},
                "text": {"join": ["title", "body"]},
            },
        },
        "drop": ["reviewerNickname"],
    },
    "google_play_reviews": {
        "vendor": "Google Play Console",
        "export": "Reviews report (Download reports > Reviews; reviews_<package>_<YYYYMM>.csv, UTF-16)",
        "url": "https://support.google.com/googleplay/android-developer/answer/6135870",
        "note": (
            "Column names are the monthly reviews report's (Package Name, App Version Code, App Version "
            "Name, Reviewer Language, Device, Review Submit Date and Time, Review Submit Millis Since "
            "Epoch, Review Last Update Date and Time, Review Last Update Millis Since Epoch, Star Rating, "
            "Review Title, Review Text, Developer Reply Date and Time, Developer Reply Millis Since "
            "Epoch, Developer Reply Text, Review Link); field meanings match the Reviews API "
            "(https://developers.google.com/android-publisher/api-ref/rest/v3/reviews: starRating 1-5, "
            "reviewerLanguage, appVersionName). The report has no review id: the id is 'gp-' + the "
            "first 16 hex digits of SHA-256 over Package Name, Review Submit Millis Since Epoch, "
            "Device, Reviewer Language and App Version Code (stable across monthly re-exports, since "
            "an edit changes only the Last Update columns; a blank millis is replaced by the submit "
            "date and time). A rating without text is quarantined: "
            "feedback needs the customer's words."
        ),
        "required": ["Package Name", "Review Submit Date and Time", "Star Rating", "Review Text"],
        "tables": {
            "feedback": {
                # A report with the millis column blank still tells reviews apart by their
                # submit time; ids of rows that have millis are unchanged.
                "id": {"hash": ["Package Name", "Review Submit Millis Since Epoch", "Device", "Reviewer Language",
                                "App Version Code"], "prefix": "gp-",
                       "fallback": {"Review Submit Millis Since Epoch": "Review Submit Date and Time"}},
                "source": {"const": "review"},
                "channel": {"const": "google_play"},
                "locale": {"col": "Reviewer Language"},
                "product_id": {"col": "Package Name"},
                "event_time": {"time": "Review Submit Date and Time", "formats": [], "tz": "UTC"},
                "rating": {"col": "Star Rating", "range": (1, 5)},
                "text": {"join": ["Review Title", "Review Text"]},
            },
        },
        "drop": [],
    },
    "trustpilot_reviews": {
        "vendor": "Trustpilot",
        "export": "Service reviews download (Trustpilot Business > Service reviews > Download CSV)",
        "url": "https://support.trustpilot.com/hc/en-us/articles/204868067-The-Service-Reviews-page",
        "note": (
            "The Service Reviews page documents the download but lists no columns; the header here "
            "(Review ID, Review Created (UTC), Review Consumer User ID, Review Title, Review "
            "Content, Review Stars, Source Of Review, Review Language, Domain URL, Webshop Name, Business "
            "Unit ID, Tags, Company Reply Date (UTC), Company Reply Content, Reference Id, Consumer "
            "Email, Consumer Name, Consumer Location) is the one business accounts receive, not "
            "confirmed against a published list. Times are UTC, as the column names say."
        ),
        "required": ["Review ID", "Review Created (UTC)", "Review Stars", "Review Content"],
        "tables": {
            "feedback": {
                "id": {"col": "Review ID", "prefix": "tp-"},
                "source": {"const": "review"},
                "channel": {"const": "trustpilot"},
                "locale": {"col": "Review Language"},
                "customer_id": {"first": ["Consumer Email", "Review Consumer User ID"]},
                "event_time": {"time": "Review Created (UTC)", "formats": _TRUSTPILOT_TIME, "tz": "UTC"},
                "rating": {"col": "Review Stars", "range": (1, 5)},
                "text": {"join": ["Review Title", "Review Content"]},
            },
        },
        "drop": ["Consumer Name", "Consumer Location"],
    },
    "shopify_orders": {
        "vendor": "Shopify",
        "export": "Orders > Export > CSV for Excel, Numbers, or other spreadsheet programs",
        "url": "https://help.shopify.com/en/manual/fulfillment/managing-orders/exporting-orders",
        "note": (
            "One row per line item; order-level columns (Email, Financial Status, Currency, totals, "
            "addresses) are filled on an order's first row only and carried to its other rows here "
            "(https://docs.xbp.app/docs/development/integrations/shopify/order-format shows a real "
            "export). Column names follow Shopify's export and the Transporter orders CSV "
            "(https://help.shopify.com/en/manual/migrating-to-shopify/transporter-app/csv-orders). "
            "Each line is one orders row: id = order Name + '/' + the line's position in the order "
            "(1-based, file order); revenue = Lineitem price x Lineitem quantity - Lineitem discount; "
            "margin stays empty (the export has no cost); customer_id = the order's Email "
            "(pseudonymised); region = Shipping Country."
        ),
        "required": ["Name", "Created at", "Lineitem quantity", "Lineitem price"],
        "group": "Name",
        "fill": ["Email", "Financial Status", "Fulfillment Status", "Currency", "Created at", "Shipping Country",
                 "Paid at", "Cancelled at"],
        "tables": {
            "orders": {
                "id": {"line_id": "Name"},
                "customer_id": {"col": "Email"},
                "sku": {"col": "Lineitem sku"},
                "region": {"col": "Shipping Country"},
                "order_time": {"time": "Created at", "formats": _SHOPIFY_TIME},
                "quantity": {"col": "Lineitem quantity"},
                "revenue": {"line_total": ["Lineitem price", "Lineitem quantity"], "minus": "Lineitem discount"},
            },
        },
        "drop": [
            "Billing Name", "Billing Street", "Billing Address1", "Billing Address2", "Billing Company",
            "Billing City", "Billing Zip", "Billing Province", "Billing Province Name", "Billing Phone",
            "Shipping Name", "Shipping Street", "Shipping Address1", "Shipping Address2", "Shipping Company",
            "Shipping City", "Shipping Zip", "Shipping Province", "Shipping Province Name", "Shipping Phone",
            "Phone",
        ],
    },
    "loop_returns": {
        "vendor": "Loop Returns (Shopify returns app)",
        "export": "Returns report, one row per returned line item",
        "url": "https://help.loopreturns.com/article/46-viewing-returns",
        "note": (
            "Loop documents the returns view's fields (order name, customer e-mail, created date, return "
            "type Refund/Exchange/Gift Card/Shop Now, shipping status, status, RMA / Loop Return ID; "
            "https://help.loopreturns.com/article/47-managing-returns) but publishes no CSV column list. "
            "The header here (Return ID, Order Name, Customer Email, Created At, Return Type, Status, "
            "Shipping Status, Product Name, SKU, Quantity, Return Reason, Customer Comment, Refund "
            "Amount, Currency) is our assumption built on those fields: NOT a confirmed vendor export; "
            "check your file's header against it. id = Return ID + '/' + the line's position in the "
            "return; order_id = the Shopify order Name (shopify_orders' ids add '/<line>', so join a "
            "return to its order line on order Name and sku); kind is 'return' (Loop handles goods sent "
            "back; the outcome, refund or exchange, is kept as an attribute); reason = Return Reason and "
            "the customer's comment, redacted like feedback text."
        ),
        "required": ["Return ID", "Order Name", "Created At", "Refund Amount"],
        "group": "Return ID",
        "fill": ["Order Name", "Customer Email", "Created At", "Return Type", "Status", "Currency"],
        "tables": {
            "refunds": {
                "id": {"line_id": "Return ID"},
                "order_id": {"col": "Order Name"},
                "customer_id": {"col": "Customer Email"},
                "sku": {"col": "SKU"},
                "kind": {"const": "return"},
                "event_time": {"time": "Created At", "formats": _SHOPIFY_TIME},
                "amount": {"col": "Refund Amount"},
                "reason": {"join": ["Return Reason", "Customer Comment"]},
            },
        },
        "drop": [],
    },
}
