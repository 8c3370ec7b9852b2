-- A TicketCancelled can reach the scheduler before the TicketAccepted it cancels
-- (the acceptance was dead-lettered and is replayed later). The cancellation is
-- remembered here, so that the late acceptance is stored as cancelled and books nothing.
CREATE TABLE IF NOT EXISTS early_cancellation (
    ticket_id    uuid        PRIMARY KEY,
    cancelled_at timestamptz NOT NULL
);
