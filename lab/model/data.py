"""Synthetic real-estate leads: 64 meaningful features and whether the lead converted.

Nothing is downloaded: leads are drawn from a seeded numpy Generator, so the same seed gives
identical arrays (with the same numpy: Generator streams may change between numpy releases,
which is why the model card records the numpy version). Two unobserved traits drive both the
behaviour we see and the outcome - purchase intent and affluence - which makes features
correlated the way real CRM data is, and caps what any model can learn. The label comes from
a nonlinear ground truth (thresholds, interactions, an inverted U) plus noise: the default
model reaches an AUC of about 0.84 on held-out leads, the ground truth itself about 0.85
from the observable features, never 1.0.

Counts and money are log-transformed and standardized with fixed moments taken from a large
reference draw, not from the sample at hand, so that leads generated later in any number (for
example by the inference workload) are scaled exactly like the ones the model was trained on.
Flags and one-hot columns stay 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

SOURCES = ("web", "referral", "portal", "social", "paid_search", "open_house", "walk_in", "email_campaign")
SOURCE_SHARE = (0.24, 0.10, 0.22, 0.12, 0.14, 0.06, 0.04, 0.08)
REGIONS = ("north", "south", "east", "west", "central", "coast", "lakes", "hills", "valley", "metro")
REGION_SHARE = (0.12, 0.11, 0.10, 0.10, 0.14, 0.07, 0.06, 0.06, 0.09, 0.15)
PROPERTY_TYPES = ("condo", "single_family", "townhouse", "multi_family", "land", "commercial")
PROPERTY_SHARE = (0.26, 0.40, 0.18, 0.07, 0.05, 0.04)
DEVICES = ("desktop", "mobile", "tablet")
DEVICE_SHARE = (0.38, 0.54, 0.08)
CONTACT_PREFERENCES = ("email", "phone", "sms")
CONTACT_SHARE = (0.45, 0.35, 0.20)

# Continuous columns: log-transformed where skewed, then standardized.
CONTINUOUS_FEATURES = (
    "budget_usd",
    "income_usd",
    "credit_score",
    "timeline_days",
    "email_opens_30d",
    "email_clicks_30d",
    "page_views_30d",
    "listing_views_30d",
    "saved_searches",
    "form_submissions",
    "calls_answered",
    "chat_messages",
    "open_house_visits",
    "session_minutes_30d",
    "prior_contacts",
    "days_since_last_touch",
    "days_since_signup",
    "agent_response_minutes",
    "household_size",
    "bedrooms_wanted",
    "commute_km",
    "budget_to_income",
    "listing_view_share",
    "down_payment_pct",
    "age_years",
)
FLAG_FEATURES = (
    "mortgage_preapproved",
    "first_time_buyer",
    "has_agent",
    "app_installed",
    "sms_opt_in",
    "price_alerts_on",
    "weekend_inquiry",
    "returning_visitor",
    "sell_before_buy",
)
FEATURE_NAMES: tuple[str, ...] = (
    CONTINUOUS_FEATURES
    + FLAG_FEATURES
    + tuple(f"source_{name}" for name in SOURCES)
    + tuple(f"region_{name}" for name in REGIONS)
    + tuple(f"property_{name}" for name in PROPERTY_TYPES)
    + tuple(f"device_{name}" for name in DEVICES)
    + tuple(f"contact_{name}" for name in CONTACT_PREFERENCES)
)
FEATURE_COUNT = 64
assert len(FEATURE_NAMES) == FEATURE_COUNT, len(FEATURE_NAMES)

# Ground-truth effects of the categorical columns on the log-odds of converting.
SOURCE_EFFECT = np.array([0.0, 0.9, -0.4, -0.5, -0.2, 0.6, 0.7, 0.1])
REGION_EFFECT = np.array([0.1, -0.2, 0.0, 0.2, 0.3, -0.3, 0.0, -0.1, 0.1, 0.4])
REGION_PRICE = np.array([0.1, -0.3, 0.0, 0.3, 0.2, 0.6, -0.1, -0.2, -0.4, 0.7])
PROPERTY_EFFECT = np.array([0.1, 0.3, 0.2, -0.2, -0.7, -0.9])
# Tuned together: about one lead in four converts; the true log-odds rank leads with an AUC of
# 0.89, their observable part (no intent, no noise) with 0.85 - roughly the ceiling for any model.
BASE_LOG_ODDS = -2.9
SIGNAL_SCALE = 0.55
REFERENCE_ROWS = 50_000
REFERENCE_SEED = 20_240_601


@dataclass(frozen=True)
class Leads:
    """Model-ready leads: `features` (rows x 64, float32) and `converted` (rows, bool)."""

    features: FloatArray
    converted: BoolArray

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def conversion_rate(self) -> float:
        return float(self.converted.mean()) if self.rows else 0.0


@dataclass(frozen=True)
class LeadSplit:
    """Training leads and held-out leads, drawn from independent streams of one seed."""

    train: Leads
    heldout: Leads


def generate_leads(rows: int, seed: int) -> Leads:
    """`rows` standardized leads with their labels; the same (rows, seed) gives identical arrays."""
    raw, converted = _draw(rows, np.random.default_rng(seed))
    return Leads(features=_standardize(raw), converted=converted)


def split_leads(train_rows: int, heldout_rows: int, seed: int) -> LeadSplit:
    """A train / held-out split; the held-out leads do not change when `train_rows` does."""
    train_stream, heldout_stream = np.random.SeedSequence(seed).spawn(2)
    train_raw, train_y = _draw(train_rows, np.random.default_rng(train_stream))
    heldout_raw, heldout_y = _draw(heldout_rows, np.random.default_rng(heldout_stream))
    return LeadSplit(
        train=Leads(features=_standardize(train_raw), converted=train_y),
        heldout=Leads(features=_standardize(heldout_raw), converted=heldout_y),
    )


def _draw(rows: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], BoolArray]:
    """Raw (log-transformed, unstandardized) features and labels; the draw order is fixed."""
    n = rows
    intent = rng.standard_normal(n)  # unobserved: how ready the person is to buy
    affluence = rng.standard_normal(n)  # unobserved
    source = rng.choice(len(SOURCES), size=n, p=SOURCE_SHARE)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARE)
    property_type = rng.choice(len(PROPERTY_TYPES), size=n, p=PROPERTY_SHARE)
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE)
    contact = rng.choice(len(CONTACT_PREFERENCES), size=n, p=CONTACT_SHARE)

    income_usd = np.exp(11.2 + 0.45 * affluence + 0.2 * rng.standard_normal(n))
    budget_usd = np.exp(12.6 + 0.5 * affluence + 0.3 * REGION_PRICE[region] + 0.35 * rng.standard_normal(n))
    credit_score = np.clip(690 + 45 * (0.5 * affluence + rng.standard_normal(n)), 300, 850)
    preapproved = rng.random(n) < _sigmoid(-0.6 + 0.8 * intent + 0.6 * (credit_score - 690) / 45)
    first_time_buyer = rng.random(n) < 0.35
    has_agent = rng.random(n) < 0.12
    app_installed = rng.random(n) < _sigmoid(-1.2 + 0.5 * intent + 0.8 * (device == 1))
    sms_opt_in = rng.random(n) < np.where(contact == 2, 0.9, 0.3)
    price_alerts_on = rng.random(n) < _sigmoid(-0.8 + 0.6 * intent)
    weekend_inquiry = rng.random(n) < 0.3
    returning_visitor = rng.random(n) < _sigmoid(0.2 + 0.7 * intent)
    sell_before_buy = rng.random(n) < np.where(first_time_buyer, 0.02, 0.45)

    timeline_days = np.clip(np.exp(4.6 - 0.5 * intent + 0.7 * rng.standard_normal(n)), 7, 720)
    email_opens = rng.poisson(np.exp(1.2 + 0.5 * intent + 0.3 * rng.standard_normal(n)))
    email_clicks = rng.binomial(email_opens, _sigmoid(-1.5 + 0.4 * intent))
    page_views = rng.poisson(np.exp(2.2 + 0.6 * intent + 0.3 * (device == 0)))
    listing_views = rng.binomial(page_views, 0.4)
    saved_searches = rng.poisson(np.exp(-0.5 + 0.7 * intent))
    form_submissions = rng.poisson(np.exp(-1.0 + 0.5 * intent))
    calls_answered = rng.poisson(np.exp(-0.8 + 0.4 * intent + 0.5 * (contact == 1)))
    chat_messages = rng.poisson(np.exp(-0.3 + 0.4 * intent))
    open_house_visits = rng.poisson(np.exp(-1.2 + 0.5 * intent + 0.8 * (source == 5)))
    session_minutes = rng.gamma(2.0, np.exp(2.0 + 0.4 * intent))
    prior_contacts = rng.poisson(2.5, size=n)
    days_since_last_touch = rng.exponential(np.exp(2.5 - 0.4 * intent))
    days_since_signup = rng.exponential(120.0, size=n)
    agent_response_minutes = np.exp(3.0 + 1.0 * rng.standard_normal(n))
    household_size = 1 + rng.poisson(1.4, size=n)
    bedrooms_wanted = np.clip(1 + rng.poisson(0.6 * household_size), 1, 6)
    commute_km = rng.lognormal(2.6, 0.6, size=n)
    budget_to_income = budget_usd / income_usd
    listing_view_share = listing_views / np.maximum(page_views, 1)
    down_payment_pct = np.clip(12 + 6 * affluence + 5 * rng.standard_normal(n), 0, 60)
    age_years = np.clip(np.where(first_time_buyer, 31, 44) + 9 * rng.standard_normal(n), 21, 85)

    # Ground truth: the log-odds of converting, from the raw quantities a broker would recognise.
    engagement = (
        0.5 * np.log1p(email_opens)
        + 0.6 * np.log1p(email_clicks)
        + 0.4 * np.log1p(listing_views)
        + 0.5 * np.log1p(saved_searches)
        + 0.7 * (form_submissions > 0)
        + 0.4 * np.log1p(calls_answered)
    )
    urgent = timeline_days < 90
    stretched = np.maximum(np.log(budget_to_income) - np.log(5.0), 0.0)  # budgets above 5x income
    signal = (
        engagement
        + 0.8 * engagement * urgent  # engaged AND in a hurry is worth more than the sum
        + 0.9 * urgent
        + 0.5 * (timeline_days < 30)
        - 0.8 * (timeline_days > 365)
        - 1.5 * (days_since_last_touch > 21)  # a lead goes cold after three weeks
        - 0.02 * np.minimum(days_since_last_touch, 60)
        + preapproved * (0.7 + 0.6 * (credit_score > 700))
        - 1.0 * (credit_score < 620)
        - 2.0 * stretched * ~preapproved  # a lender's yes makes a stretched budget real
        - 0.6 * first_time_buyer * ~preapproved
        - 0.7 * sell_before_buy * urgent
        - 1.5 * has_agent
        - 0.25 * (prior_contacts - 3) ** 2  # too few contacts: cold; too many: annoyed
        - 0.35 * np.log1p(agent_response_minutes / 30)
        + 0.3 * (open_house_visits > 0) * (property_type == 1)
        + SOURCE_EFFECT[source]
        + REGION_EFFECT[region]
        + PROPERTY_EFFECT[property_type]
        + 0.5 * intent  # what the features only partly reveal
    )
    log_odds = BASE_LOG_ODDS + SIGNAL_SCALE * signal + rng.standard_normal(n)  # + what nobody can know
    converted = rng.random(n) < _sigmoid(log_odds)

    continuous = np.column_stack(
        [
            np.log(budget_usd),
            np.log(income_usd),
            credit_score,
            np.log(timeline_days),
            np.log1p(email_opens),
            np.log1p(email_clicks),
            np.log1p(page_views),
            np.log1p(listing_views),
            np.log1p(saved_searches),
            np.log1p(form_submissions),
            np.log1p(calls_answered),
            np.log1p(chat_messages),
            np.log1p(open_house_visits),
            np.log1p(session_minutes),
            prior_contacts,
            np.log1p(days_since_last_touch),
            np.log1p(days_since_signup),
            np.log1p(agent_response_minutes),
            household_size,
            bedrooms_wanted,
            np.log1p(commute_km),
            np.log(budget_to_income),
            listing_view_share,
            down_payment_pct,
            age_years,
        ]
    )
    flags = np.column_stack(
        [
            preapproved,
            first_time_buyer,
            has_agent,
            app_installed,
            sms_opt_in,
            price_alerts_on,
            weekend_inquiry,
            returning_visitor,
            sell_before_buy,
        ]
    )
    one_hots = [
        np.eye(len(names))[codes]
        for names, codes in (
            (SOURCES, source),
            (REGIONS, region),
            (PROPERTY_TYPES, property_type),
            (DEVICES, device),
            (CONTACT_PREFERENCES, contact),
        )
    ]
    raw = np.column_stack([continuous, flags, *one_hots]).astype(np.float64)
    return raw, converted


def _standardize(raw: npt.NDArray[np.float64]) -> FloatArray:
    mean, std = _reference_moments()
    scaled = raw.copy()
    width = len(CONTINUOUS_FEATURES)
    scaled[:, :width] = (raw[:, :width] - mean) / std
    return scaled.astype(np.float32)


@lru_cache(maxsize=1)
def _reference_moments() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and std of the continuous columns in a fixed reference draw (about 50 ms, once)."""
    raw, _ = _draw(REFERENCE_ROWS, np.random.default_rng(REFERENCE_SEED))
    continuous = raw[:, : len(CONTINUOUS_FEATURES)]
    return continuous.mean(axis=0), continuous.std(axis=0)


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))
